"""Websockets: ``/websocket`` (the Perspective protocol) and ``/replicate/{table}``.

Both are kept as thin as perspective's own handler. What they add is the
part that makes them safe to expose: messages produced on other threads (a
table update notifies views and replicas on the applier thread) are handed to
the IOLoop, the only thread that writes to sockets, and every byte queued for
a client is counted. A client that falls behind by more than
``server.max_client_buffer_bytes`` is disconnected (reason ``slow``), so a
stalled browser cannot grow server memory without bound.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import perspective
from tornado.concurrent import Future
from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from service.metrics import Metrics
from service.replication import SNAPSHOT, Replicator
from service.security.guard import SessionGuard

log = logging.getLogger(__name__)


class BoundedWebSocket(WebSocketHandler):
    """A websocket whose outgoing queue is capped in bytes."""

    def initialize(self, metrics: Metrics, sessions: set[Any], max_buffer_bytes: int) -> None:
        self.metrics = metrics
        self.sessions = sessions
        self.max_buffer_bytes = max_buffer_bytes
        self.loop = IOLoop.current()
        # Not ``close_reason``: tornado overwrites that with the text of the client's close frame.
        self.disconnect_reason = "client"
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self._overflowed = False

    def _opened(self) -> None:
        self.sessions.add(self)
        self.metrics.websocket_sessions.set(len(self.sessions))

    def queue_from_any_thread(self, messages: list[bytes]) -> None:
        """Queue messages for this client; never blocks, never grows past the cap."""
        size = sum(len(m) for m in messages)
        with self._queued_lock:
            if self._overflowed:
                return
            if self._queued_bytes + size > self.max_buffer_bytes:
                self._overflowed = True
                self.loop.add_callback(self._disconnect_slow)
                return
            self._queued_bytes += size
        self.loop.add_callback(self._write_all, messages, size)

    def _write_all(self, messages: list[bytes], size: int) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            self._release(size)
            return
        try:
            for message in messages[:-1]:
                self._write(message)
            flushed = self._write(messages[-1])
        except WebSocketClosedError:
            self._release(size)
            return
        flushed.add_done_callback(lambda _future: self._release(size))

    def _write(self, message: bytes) -> Future[None]:
        future = self.write_message(message, binary=True)
        # A client that disconnects mid-write fails these futures; that is its normal end.
        future.add_done_callback(_consume_exception)
        self.metrics.websocket_messages_sent.inc()
        self.metrics.websocket_bytes_sent.inc(len(message))
        return future

    def _release(self, size: int) -> None:
        with self._queued_lock:
            self._queued_bytes -= size

    def _disconnect_slow(self) -> None:
        log.warning(
            "disconnecting a websocket client %s: more than %d bytes waiting to be sent",
            self.request.remote_ip,
            self.max_buffer_bytes,
        )
        self.disconnect_reason = "slow"
        self.close(1008, "too slow: outgoing buffer limit exceeded")

    def _closed(self) -> None:
        if self in self.sessions:
            self.sessions.discard(self)
            self.metrics.websocket_sessions.set(len(self.sessions))
            self.metrics.websocket_disconnects.labels(self.disconnect_reason).inc()

    def shutdown(self) -> None:
        """Close from the server side (service stopping)."""
        self.disconnect_reason = "shutdown"
        self.close(1001, "server shutting down")


class PerspectiveWebSocket(BoundedWebSocket):
    """``/websocket``: one Perspective session per connection."""

    def initialize(  # type: ignore[override]
        self, server: perspective.Server, make_guard: Callable[[Any], SessionGuard], **kwargs: Any
    ) -> None:
        super().initialize(**kwargs)
        self.perspective_server = server
        self.make_guard = make_guard
        self.session: Any = None

    def open(self, *args: str, **kwargs: str) -> None:
        # Every request passes the guard (read-only tables, limits); see service/security.
        self.guard = self.make_guard(self)
        self.session = self.perspective_server.new_session(
            self.guard.responses(lambda message: self.queue_from_any_thread([message]))
        )
        self._opened()

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, bytes):
            self.metrics.websocket_rejected.labels("not_binary").inc()
            return
        if self.session is None:
            return
        try:
            verdict = self.guard.handle(message, self.session.handle_request)
        except Exception:
            log.exception("a websocket request failed in the engine")
            self.metrics.websocket_rejected.labels("engine_error").inc()
            return
        if not verdict.allowed:
            self.metrics.websocket_rejected.labels(verdict.reason).inc()
            if verdict.response is not None:
                self.queue_from_any_thread([verdict.response])
            if verdict.close:
                self.disconnect_reason = "rejected"
                self.close(1008, "too many refused requests")

    def on_close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
            self.guard.close()
        self._closed()


class ReplicateWebSocket(BoundedWebSocket):
    """``/replicate/{table}``: a snapshot, then every applied batch, as binary frames.

    The first message is text: the table's name, schema, index and limit, so the
    browser can create a worker table of the same kind. Then binary frames, each
    one byte of kind then its body: ``S`` snapshot (Arrow IPC), ``U`` update
    (Arrow IPC), ``R`` removal keys (JSON list).
    """

    def initialize(self, replicator: Replicator, tables: dict, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.replicator = replicator
        self.tables = tables
        self.table_name: str | None = None

    def open(self, name: str) -> None:
        if name not in self.tables:
            self.metrics.websocket_rejected.labels("unknown_table").inc()
            self.close(4404, f"no table named {name!r}")
            return
        self._opened()
        table = self.tables[name]
        hello = {
            "table": name,
            "schema": dict(table.schema_),
            "index": table.index,
            "limit": table.limit,
            "editable": table.editable,
        }
        self.write_message(json.dumps(hello))
        snapshot = self.replicator.subscribe(name, self)
        self.table_name = name
        # The snapshot goes out before any delta: deltas queued after subscribe()
        # run on this IOLoop only after this method returns.
        self._write(SNAPSHOT + snapshot)

    def deliver(self, frames: list[bytes]) -> None:
        if frames:
            self.queue_from_any_thread(frames)

    def on_message(self, message: str | bytes) -> None:
        # Replicas only listen; anything they send is ignored and counted.
        self.metrics.websocket_rejected.labels("replica_message").inc()

    def on_close(self) -> None:
        if self.table_name is not None:
            self.replicator.unsubscribe(self.table_name, self)
            self.table_name = None
        self._closed()


def _consume_exception(future: Future[None]) -> None:
    if not future.cancelled():
        future.exception()
