"""Web apps on origins other than the service's, for the embedding tests.

The service listens on ``http://127.0.0.1:<port>``; an app here is opened as
``http://localhost:<its port>``: another host and another port, so another origin
(and another site) in the browser's eyes, as a company portal would be.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from service.demo.embedding import host_policy

BLANK = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>another app</title>
<link rel="icon" href="data:,"></head>
<body><h1>Another app</h1><div id="slot" style="height: 420px; width: 900px"></div></body>
</html>
"""


class BlankPage(RequestHandler):
    """An empty page under the policy the README asks of embedding apps; tests drive it."""

    def initialize(self, livetables_url: str) -> None:
        self.livetables_url = livetables_url

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", host_policy(BLANK, self.livetables_url))
        self.finish(BLANK)


class OtherOrigin:
    """A Tornado app on ``localhost`` (both address families), on a thread of its own."""

    def __init__(self, routes: list[Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.routes = routes
        self.server: HTTPServer | None = None
        self.port = 0

    def start(self) -> OtherOrigin:
        self.thread.start()

        async def listen() -> int:
            sockets = bind_sockets(0, "localhost")
            self.server = HTTPServer(Application(self.routes))
            self.server.add_sockets(sockets)
            return sockets[0].getsockname()[1]

        self.port = asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.stop()
                await self.server.close_all_connections()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"
