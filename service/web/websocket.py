"""``/websocket``: the Perspective protocol over a Tornado websocket.

Kept as thin as perspective's own handler; what it adds is bookkeeping:
session and byte counts for the metrics, and responses produced on other
threads (a table update notifies views on the applier thread) are handed to
the IOLoop, the only thread allowed to write to the socket.
"""

from __future__ import annotations

import logging
from typing import Any

import perspective
from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from service.metrics import Metrics

log = logging.getLogger(__name__)


class PerspectiveWebSocket(WebSocketHandler):
    """One browser or client: one perspective session."""

    def initialize(self, server: perspective.Server, metrics: Metrics, sessions: set[Any]) -> None:
        self.perspective_server = server
        self.metrics = metrics
        self.sessions = sessions
        self.loop = IOLoop.current()
        self.session: perspective.Session | None = None
        self.close_reason = "client"

    def check_origin(self, origin: str) -> bool:
        # Same-origin by default, like any browser-facing service.
        return super().check_origin(origin)

    def open(self, *args: str, **kwargs: str) -> None:
        self.session = self.perspective_server.new_session(self._from_any_thread)
        self.sessions.add(self)
        self.metrics.websocket_sessions.set(len(self.sessions))

    def _from_any_thread(self, message: bytes) -> None:
        self.loop.add_callback(self._send, message)

    def _send(self, message: bytes) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        try:
            self.write_message(message, binary=True)
        except WebSocketClosedError:
            return
        self.metrics.websocket_messages_sent.inc()
        self.metrics.websocket_bytes_sent.inc(len(message))

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, bytes):
            self.metrics.websocket_rejected.labels("not_binary").inc()
            return
        if self.session is not None:
            self.session.handle_request(message)

    def on_close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        if self in self.sessions:
            self.sessions.discard(self)
            self.metrics.websocket_sessions.set(len(self.sessions))
            self.metrics.websocket_disconnects.labels(self.close_reason).inc()

    def shutdown(self) -> None:
        """Close from the server side (service stopping)."""
        self.close_reason = "shutdown"
        self.close(1001, "server shutting down")
