"""HTML pages. ``/`` lists the tables and dashboards with their live state."""

from __future__ import annotations

from html import escape

from tornado.web import RequestHandler

from service.state import ServiceState

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;
  color:#1d232a;padding:0 1rem}
h1{font-size:1.5rem}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e3e6ea}
th{font-weight:600;color:#55606b}.ok{color:#17803d}.wait{color:#b25e09}.num{text-align:right}
code{background:#f3f4f6;padding:0 .25rem;border-radius:3px}
"""


class IndexPage(RequestHandler):
    def initialize(self, state: ServiceState) -> None:
        self.state = state

    def get(self) -> None:
        rows = []
        for t in self.state.tables_summary():
            status = (
                '<span class="ok">live</span>'
                if t["ready"]
                else '<span class="wait">catching up</span>'
            )
            if not t["kafka_connected"]:
                status = '<span class="wait">kafka unreachable</span>'
            kind = (
                f"index {t['index']}"
                if t["index"]
                else f"limit {t['limit']}"
                if t["limit"]
                else "append"
            )
            rows.append(
                f'<tr><td><a href="tables/{escape(t["name"])}">{escape(t["name"])}</a></td>'
                f"<td>{escape(', '.join(t['topics']))}</td><td>{escape(kind)}</td>"
                f"<td class=num>{t['rows']:,}</td><td class=num>{t['lag']:,}</td>"
                f"<td>{status}</td></tr>"
            )
        dashboards = "".join(
            f'<li><a href="dashboards/{escape(name)}">{escape(d.title or name)}</a></li>'
            for name, d in self.state.config.dashboards.items()
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            "<!doctype html><html><head><meta charset=utf-8><title>livetables</title>"
            f"<style>{_STYLE}</style></head><body><h1>livetables</h1>"
            "<h2>Tables</h2><table><tr><th>table</th><th>topics</th><th>kind</th>"
            "<th class=num>rows</th><th class=num>lag</th><th>status</th></tr>"
            + "".join(rows)
            + "</table>"
            + (f"<h2>Dashboards</h2><ul>{dashboards}</ul>" if dashboards else "")
            + "<p>Websocket: <code>/websocket</code> · <a href=api/tables>/api/tables</a> · "
            "<a href=metrics>/metrics</a></p></body></html>"
        )
