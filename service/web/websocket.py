"""Websockets: ``/websocket`` (the Perspective protocol) and ``/replicate/{table}``.

Both are kept as thin as perspective's own handler. What they add is the
part that makes them safe to expose:

* engine work never runs on the IOLoop: a session's requests go, in order, to
  the engine workers (service/engine.py), after a per-session rate limit and a
  cap on requests waiting; a replica's snapshot is taken there too;
* messages produced on other threads (a table update notifies views and
  replicas on the applier thread) are handed to the IOLoop, the only thread
  that writes to sockets, and every byte queued for a client is counted. A
  client that falls behind by more than ``server.max_client_buffer_bytes`` is
  disconnected (reason ``slow``), so a stalled browser cannot grow server
  memory without bound. A replica's snapshot counts too, with an allowance of
  its own (``server.max_snapshot_bytes``) on top of the cap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
from collections.abc import Callable
from typing import Any

import perspective
from tornado.concurrent import Future
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol13

from service.engine import EngineWorkers, SerialQueue
from service.metrics import Metrics
from service.replication import Replicator
from service.security.guard import (
    ENGINE_ERROR,
    RATE_LIMITED,
    TOO_MANY_PENDING,
    SessionGuard,
    Verdict,
)
from service.security.ratelimit import TokenBucket

log = logging.getLogger(__name__)

FIN_BINARY = 0x82  # a final frame (FIN) of a binary message (opcode 2), RFC 6455 5.2


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
        self._allowance = 0  # bytes of a snapshot still queued, allowed on top of the cap
        self._queued_lock = threading.Lock()
        self._overflowed = False

    def _opened(self) -> None:
        self.sessions.add(self)
        self.metrics.websocket_sessions.set(len(self.sessions))

    def queue_from_any_thread(self, messages: list[bytes], allowance: int = 0) -> None:
        """Queue messages for this client; never blocks, never grows past the cap.

        ``allowance``: bytes of these messages allowed on top of the cap while they
        wait (a replica's snapshot), so that deltas after it still get the whole cap.
        """
        size = sum(len(m) for m in messages)
        with self._queued_lock:
            if self._overflowed:
                return
            if self._queued_bytes + size > self.max_buffer_bytes + self._allowance + allowance:
                self._overflowed = True
                self.loop.add_callback(self._disconnect_slow)
                return
            self._queued_bytes += size
            self._allowance += allowance
        self.loop.add_callback(self._write_all, messages, size, allowance)

    def _write_all(self, messages: list[bytes], size: int, allowance: int = 0) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            self._release(size, allowance)
            return
        try:
            for message in messages[:-1]:
                self._write(message)
            flushed = self._write(messages[-1])
        except WebSocketClosedError:
            self._release(size, allowance)
            return
        flushed.add_done_callback(lambda _future: self._release(size, allowance))

    def _write(self, message: bytes) -> Future[None]:
        future = _write_shared(self, message)
        # A client that disconnects mid-write fails these futures; that is its normal end.
        future.add_done_callback(_consume_exception)
        self.metrics.websocket_messages_sent.inc()
        self.metrics.websocket_bytes_sent.inc(len(message))
        return future

    def _release(self, size: int, allowance: int = 0) -> None:
        with self._queued_lock:
            self._queued_bytes -= size
            self._allowance -= allowance

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
    """``/websocket``: one Perspective session per connection, its engine work off the IOLoop."""

    def initialize(  # type: ignore[override]
        self,
        server: perspective.Server,
        make_guard: Callable[[Any], SessionGuard],
        workers: EngineWorkers,
        max_requests_per_second: float,
        max_pending_requests: int,
        max_pending_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().initialize(**kwargs)
        self.perspective_server = server
        self.make_guard = make_guard
        self.workers = workers
        self.max_requests_per_second = max_requests_per_second
        self.max_pending_requests = max_pending_requests
        self.max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0  # of requests waiting for the engine (IOLoop and workers)
        self._pending_lock = threading.Lock()
        self.session: Any = None

    def open(self, *args: str, **kwargs: str) -> None:
        # Every request passes the guard (read-only tables, limits); see service/security.
        self.guard = self.make_guard(self)
        self.rate = TokenBucket(self.max_requests_per_second)
        self.engine = SerialQueue(self.workers)
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
        self.metrics.websocket_requests.inc()
        if not self.rate.take():
            self._refused(
                self.guard.refuse(
                    message,
                    RATE_LIMITED,
                    f"more than {self.max_requests_per_second:g} requests per second "
                    "(server.max_requests_per_second)",
                )
            )
        elif (
            len(self.engine) >= self.max_pending_requests
            or self._pending_bytes + len(message) > self.max_pending_bytes
        ):
            self._refused(
                self.guard.refuse(
                    message,
                    TOO_MANY_PENDING,
                    f"{len(self.engine)} requests ({self._pending_bytes} bytes) already wait "
                    "for the engine (server.max_pending_requests, 4 x server.max_request_bytes)",
                )
            )
        else:
            session = self.session
            with self._pending_lock:
                self._pending_bytes += len(message)
            self.engine.submit(lambda: self._handle(session, message))

    def _handle(self, session: Any, message: bytes) -> None:
        """On an engine worker: the guard, then the engine."""
        with self._pending_lock:
            self._pending_bytes -= len(message)
        try:
            verdict = self.guard.handle(message, session.handle_request)
        except Exception as exc:
            log.exception("a websocket request failed in the engine")
            # An answer all the same, so the client's call fails instead of waiting forever.
            verdict = self.guard.refuse(message, ENGINE_ERROR, f"the request failed: {exc}")
        if not verdict.allowed:
            self._refused(verdict)

    def _refused(self, verdict: Verdict) -> None:
        """Count a refusal and answer it (from any thread); close a persistent offender."""
        self.metrics.websocket_rejected.labels(verdict.reason).inc()
        if verdict.response is not None:
            self.queue_from_any_thread([verdict.response])
        if verdict.close:
            self.loop.add_callback(self._close_rejected)

    def _close_rejected(self) -> None:
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            self.disconnect_reason = "rejected"
            self.close(1008, "too many refused requests")

    def on_close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            guard = self.guard

            def close_session() -> None:
                # After the request in flight, if any: then the engine drops the session's
                # views, each table's turn taken as any change of it (service/engine.py).
                try:
                    with guard.closing_turns():
                        session.close()
                finally:
                    guard.close()

            self.engine.close(close_session)
        self._closed()


class ReplicateWebSocket(BoundedWebSocket):
    """``/replicate/{table}``: a snapshot, then every applied batch, as binary frames.

    The first message is text: the table's name, schema, index and limit (the
    engine's, internal columns included, listed in ``hidden``), so the browser
    can create a worker table of the same kind. Then binary frames, each
    one byte of kind then its body: ``S`` snapshot (Arrow IPC), ``U`` update
    (Arrow IPC), ``R`` removal keys (JSON list).
    """

    def initialize(  # type: ignore[override]
        self,
        replicator: Replicator,
        tables: dict,
        workers: EngineWorkers,
        max_snapshot_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().initialize(**kwargs)
        self.replicator = replicator
        self.tables = tables
        self.workers = workers
        self.max_snapshot_bytes = max_snapshot_bytes
        self.table_name: str | None = None
        self._gone = False

    async def open(self, name: str) -> None:
        if name not in self.tables:
            self.metrics.websocket_rejected.labels("unknown_table").inc()
            self.close(4404, f"no table named {name!r}")
            return
        self._opened()
        table = self.tables[name]
        # The engine's shape: a derived table's key, an append table's internal row numbers.
        hello = {
            "table": name,
            "schema": table.engine_schema,
            "index": table.engine_index,
            "limit": table.engine_limit,
            "editable": table.editable,
            "hidden": table.hidden_columns,
        }
        self.write_message(json.dumps(hello))
        # The snapshot is taken on an engine worker: serialising a large table takes a while,
        # and subscribing waits for the table's update in progress.
        subscribed = await asyncio.wrap_future(
            self.workers.submit(lambda: self.replicator.subscribe(name, self))
        )
        if subscribed:
            self.table_name = name
            if self._gone:  # the client left while its snapshot was taken
                self.replicator.unsubscribe(name, self)
                self.table_name = None

    def deliver_snapshot(self, frame: bytes) -> bool:
        """Queue the snapshot before any delta, or refuse it (called with the table locked)."""
        if len(frame) > self.max_snapshot_bytes:
            self.metrics.websocket_rejected.labels("snapshot_too_large").inc()
            log.warning(
                "refusing a replica of a %d-byte snapshot: more than server.max_snapshot_bytes",
                len(frame),
            )
            self.loop.add_callback(self._close_snapshot_too_large, len(frame))
            return False
        self.queue_from_any_thread([frame], allowance=len(frame))
        return True

    def _close_snapshot_too_large(self, size: int) -> None:
        self.disconnect_reason = "snapshot_too_large"
        # 1009: "message too big". The reason must fit a control frame (123 bytes).
        self.close(1009, f"snapshot of {size} bytes > server.max_snapshot_bytes")

    def deliver(self, frames: list[bytes]) -> None:
        if frames:
            self.queue_from_any_thread(frames)

    def on_message(self, message: str | bytes) -> None:
        # Replicas only listen; anything they send is ignored and counted.
        self.metrics.websocket_rejected.labels("replica_message").inc()

    def on_close(self) -> None:
        self._gone = True
        if self.table_name is not None:
            self.replicator.unsubscribe(self.table_name, self)
            self.table_name = None
        self._closed()


def _write_shared(handler: WebSocketHandler, payload: bytes) -> Future[None]:
    """Send ``payload`` as one binary message without copying it for this client.

    Tornado's ``write_message`` builds each frame as ``header + payload``: a copy
    per client, so a 17.9 MB snapshot sent to 120 replicas that do not read
    held 2 GB. The same bytes go to every replica (snapshots and deltas are
    shared), so the header is written on its own and the payload handed to the
    stream as is (tornado keeps buffers over 2 KB as views, not copies): the
    payload is in memory once, however many clients wait for it. Both writes
    happen in one IOLoop callback, so no other frame can come between them.
    Compressed or masked connections (none here: the server negotiates no
    compression) go through ``write_message``.
    """
    connection = handler.ws_connection
    if connection is None or connection.is_closing():
        raise WebSocketClosedError()
    stream = getattr(connection, "stream", None)
    if (
        not isinstance(connection, WebSocketProtocol13)
        or connection.mask_outgoing
        or getattr(connection, "_compressor", None) is not None
        or stream is None
    ):
        return handler.write_message(payload, binary=True)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", FIN_BINARY, size)
    elif size <= 0xFFFF:
        header = struct.pack("!BBH", FIN_BINARY, 126, size)
    else:
        header = struct.pack("!BBQ", FIN_BINARY, 127, size)
    try:
        stream.write(header)
        return stream.write(payload)
    except StreamClosedError:
        raise WebSocketClosedError() from None


def _consume_exception(future: Future[None]) -> None:
    if not future.cancelled():
        future.exception()
