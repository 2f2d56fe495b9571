"""The demo's other web app: a page on a second origin that embeds the demo's tables.

``livetables demo`` serves it on the port after the service's (8081 by default), a
different origin from the service, the way a company portal would be. The page is
the README's example, word for word, but for the service's URL: see
``embed-example.html``. It is served with the Content-Security-Policy the README
asks of such apps, so the demo shows that policy at work.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

# The service's URL as the example spells it (the README shows it so).
EXAMPLE_URL = "http://localhost:8080/"
_SCRIPT = re.compile(r'<script type="module">(.*?)</script>', re.S)
_HOST_NAME = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def example_template() -> str:
    return resources.files("service.demo").joinpath("embed-example.html").read_text()


def example_page(livetables_url: str) -> str:
    """The example page, with the livetables service at ``livetables_url`` (ending in /)."""
    return example_template().replace(EXAMPLE_URL, livetables_url)


def host_policy(page: str, livetables_url: str) -> str:
    """The Content-Security-Policy an app embedding livetables needs, for ``page``.

    Scripts from the service (``'wasm-unsafe-eval'``: Perspective compiles WebAssembly),
    Perspective's worker (a ``blob:``), connections to the service (its files, its API
    and its websockets), its stylesheet plus the inline styles the viewer sets, and
    frames of its pages. The page's own inline script is allowed by its hash.
    """
    origin = livetables_url.rstrip("/")
    socket_origin = re.sub(r"^http", "ws", origin)
    script_hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _SCRIPT.findall(page)
    )
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {origin} 'wasm-unsafe-eval' {script_hashes}",
            "worker-src blob:",
            f"connect-src 'self' {origin} {socket_origin}",
            f"style-src 'self' {origin} 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            f"frame-src {origin}",
            "object-src 'none'",
            "base-uri 'none'",
        ]
    )


class ExamplePage(RequestHandler):
    """The example, pointing at the service on the same host name the page was opened by."""

    def initialize(self, livetables_port: int) -> None:
        self.livetables_port = livetables_port

    def get(self) -> None:
        # The Host header names the service's host too (it is the same machine); anything
        # but a plain name or address falls back to localhost, never reaches the page.
        host = self.request.host_name
        if not _HOST_NAME.fullmatch(host):
            host = "localhost"
        url = f"http://{host}:{self.livetables_port}/"
        page = example_page(url)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", host_policy(page, url))
        self.set_header("Cache-Control", "no-store")
        self.finish(page)


def example_origins(host: str, port: int) -> list[str]:
    """The origins the example page may be opened from (the service lists them)."""
    names = ["localhost", "127.0.0.1"]
    if host not in ("", "0.0.0.0", "::", *names):
        names.append(host)
    return [f"http://{name}:{port}" for name in names]


def serve_example(host: str, port: int, livetables_port: int) -> HTTPServer:
    """Serve the example page on ``host:port`` (on the running IOLoop)."""
    app = Application([(r"/", ExamplePage, {"livetables_port": livetables_port})])
    server = HTTPServer(app)
    server.listen(port, address=None if host in ("", "0.0.0.0") else host)
    return server
