"""HTML pages: the index, a table's full-page viewer, and the YAML-defined dashboards."""

from __future__ import annotations

import json
from typing import Any

from tornado.web import Finish

from service import __version__
from service.config import TableConfig
from service.state import ServiceState
from service.web.base import BaseHandler
from service.web.errors import ClientError

MODES = {
    "replicated": "The browser holds a copy of the table and receives every change as it "
    "is applied: fast to explore, sized by the browser's memory.",
    "server": "Every query runs on the server's table: for tables too large for a browser.",
}


# Inside <script>, "</script", "<!--" and "<script" change how the HTML parser reads on
# (an unclosed "<!--<script>" swallows the real "</script>"); JSON may spell any character
# as an escape, so "<", ">" and "&" never appear literally. U+2028/9 for old JS parsers.
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _script_json(payload: Any) -> str:
    """JSON safe to place inside a <script> element, whatever strings it carries."""
    return json.dumps(payload).translate(_SCRIPT_ESCAPES)


def _default_columns(viewer: dict[str, Any], table: TableConfig) -> dict[str, Any]:
    """A viewer without ``columns`` shows the table's own, not its internal ones."""
    if table.hidden_columns and not viewer.get("columns"):
        return {**viewer, "columns": list(table.columns)}
    return viewer


class _Page(BaseHandler):
    def initialize(self, state: ServiceState, assets_ok: bool) -> None:
        self.state = state
        self.assets_ok = assets_ok

    def mode(self) -> str:
        mode = self.get_query_argument("mode", "replicated")
        if mode not in MODES:
            raise ClientError(400, f"mode must be replicated or server, not {mode!r}")
        return mode

    def require_assets(self) -> None:
        """Without the browser files a page cannot work: say so in words a user can act on."""
        if self.assets_ok:
            return
        from service.web.assets import MISSING_ASSETS_HELP

        # Where it looked and why each place failed is in the service log (file paths are
        # for operators, not for every browser).
        self.set_status(503)
        self.render("missing-assets.html", root="../", help_text=MISSING_ASSETS_HELP)
        raise Finish()

    def render_mode_page(self, template: str, mode: str, **kwargs: Any) -> None:
        self.render(
            template,
            root="../",
            mode=mode,
            other_mode="server" if mode == "replicated" else "replicated",
            mode_help=MODES[mode],
            **kwargs,
        )


class IndexPage(_Page):
    def get(self) -> None:
        tables = []
        summary = [t for t in self.state.tables_summary() if self.may_read(t["name"])]
        readable = {t["name"] for t in summary}
        # A dashboard opens only for a user who may read all its tables (403 otherwise);
        # the others are not listed, so their cards name no table the user may not see.
        dashboards = [
            (name, d)
            for name, d in self.state.config.dashboards.items()
            if all(p.table in readable for p in d.panels)
        ]
        for t in summary:
            if not t["kafka_connected"]:
                status, text = "down", "kafka unreachable"
            elif t["ready"]:
                status, text = "live", "live"
            else:
                status, text = "wait", "catching up"
            kind = (
                f"derived from {t['from']}"
                if t.get("from")
                else f"index {t['index']}"
                if t["index"]
                else f"limit {t['limit']:,}"
                if t["limit"]
                else "append"
            )
            if t.get("retention"):
                kind += f", rows kept {t['retention']}"
            tables.append({**t, "status": status, "status_text": text, "kind": kind})
        self.render(
            "index.html",
            root="./",
            page="index",
            title="Tables and dashboards",
            tables=tables,
            dashboards=dashboards,
            version=__version__,
        )


class TablePage(_Page):
    def requested_tables(self) -> list[str]:
        """The table in the path: 403 unless the user may read it."""
        return self.path_args[:1]

    def get(self, name: str) -> None:
        table = self.state.config.tables.get(name)
        if table is None:
            raise ClientError(404, f"no table named {name!r}")
        self.require_assets()
        mode = self.mode()
        viewer = _default_columns({"plugin": "Datagrid"}, table)
        page = {"mode": mode, "table": name, "viewer": viewer}
        self.render_mode_page(
            "table.html",
            mode,
            page="table",
            title=name,
            table=name,
            editable=table.editable,
            page_json=_script_json(page),
        )


class DashboardPage(_Page):
    def requested_tables(self) -> list[str]:
        """Every table on the dashboard: it opens only for a user who may read them all."""
        dashboard = self.state.config.dashboards.get(self.path_args[0])
        return sorted({p.table for p in dashboard.panels}) if dashboard is not None else []

    def get(self, name: str) -> None:
        dashboard = self.state.config.dashboards.get(name)
        if dashboard is None:
            raise ClientError(404, f"no dashboard named {name!r}")
        self.require_assets()
        mode = self.mode()
        panels = [
            {
                "table": panel.table,
                "title": panel.title or panel.table,
                "viewer": _default_columns(
                    panel.viewer.model_dump(), self.state.config.tables[panel.table]
                ),
                "editable": self.state.config.tables[panel.table].editable,
            }
            for panel in dashboard.panels
        ]
        self.render_mode_page(
            "dashboard.html",
            mode,
            page="dashboard",
            title=dashboard.title or name,
            panels=panels,
            page_json=_script_json({"mode": mode, "panels": panels}),
        )
