"""Websockets: ``/websocket`` (the Perspective protocol) and ``/replicate/{table}``.

Both are kept as thin as perspective's own handler. Who may connect, from
where, is settled before the upgrade (service/web/base.py); what they send is
queued and capped (service/web/outgoing.py). What they add besides is the part
that makes them safe to expose: engine work never runs on the IOLoop. A
session's requests go, in order, to the engine workers (service/engine.py),
after a per-session rate limit and a cap on requests waiting, and every one
passes the session's guard (service/security/guard.py); a replica's snapshot
is taken on a worker too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import perspective
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from service.config import TableConfig
from service.engine import EngineWorkers, SerialQueue
from service.replication import Replicator
from service.security.cost import TableFacts
from service.security.guard import GuardPolicy, SessionGuard, Verdict
from service.security.ratelimit import TokenBucket
from service.security.refusals import ENGINE_ERROR, RATE_LIMITED, TOO_MANY_PENDING
from service.web.fanout import ReplicaFanout
from service.web.outgoing import BoundedWebSocket, shareable_stream, write_now

log = logging.getLogger(__name__)


class PerspectiveWebSocket(BoundedWebSocket):
    """``/websocket``: one Perspective session per connection, its engine work off the IOLoop."""

    def initialize(  # type: ignore[override]
        self,
        server: perspective.Server,
        guard_policy: GuardPolicy,
        facts: TableFacts,
        workers: EngineWorkers,
        max_requests_per_second: float,
        max_pending_requests: int,
        max_pending_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().initialize(**kwargs)
        self.perspective_server = server
        self.guard_policy = guard_policy
        self.facts = facts
        self.workers = workers
        self.max_requests_per_second = max_requests_per_second
        self.max_pending_requests = max_pending_requests
        self.max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0  # of requests waiting for the engine (IOLoop and workers)
        self._pending_lock = threading.Lock()
        self.session: Any = None

    def open(self, *args: str, **kwargs: str) -> None:
        # Every request passes the guard: read-only tables, the tables this user may
        # read, limits (service/security/guard.py).
        self.guard = SessionGuard(
            self.guard_policy,
            can_read=self.access.table_filter(self.principal),
            views_gauge=self.metrics.websocket_views,
            facts=self.facts,
        )
        self.rate = TokenBucket(self.max_requests_per_second)
        self.engine = SerialQueue(self.workers)
        self.session = self.perspective_server.new_session(
            self.guard.responses(lambda message: self.queue_from_any_thread([message]))
        )
        self.session_opened()

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
        super().on_close()


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
        tables: dict[str, TableConfig],
        workers: EngineWorkers,
        max_snapshot_bytes: int,
        fanout: ReplicaFanout,
        **kwargs: Any,
    ) -> None:
        super().initialize(**kwargs)
        self.fanout = fanout  # how the replicator feeds this replica (with all the others)
        self.replicator = replicator
        self.tables = tables
        self.workers = workers
        self.max_snapshot_bytes = max_snapshot_bytes
        self.table_name: str | None = None
        self._gone = False

    def requested_tables(self) -> list[str]:
        """The table in the path: refused before the upgrade unless the user may read it."""
        return self.path_args[:1]

    async def open(self, name: str) -> None:
        if name not in self.tables:
            self.metrics.websocket_rejected.labels("unknown_table").inc()
            self.close(4404, f"no table named {name!r}")
            return
        self.session_opened()
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

    def send_shared(self, wire: bytes, frames: list[bytes]) -> bool:
        """On the IOLoop: queue a flush's pre-framed bytes (``ReplicaFanout``); False if not sent.

        Written straight to the socket when nothing of this replica's is queued
        (``write_now``); what the socket does not take is queued under the same cap as
        every other message: past it the replica is disconnected as slow.
        """
        if self.ws_connection is None or self.ws_connection.is_closing() or self._overflowed:
            return False
        try:
            stream = shareable_stream(self)
        except WebSocketClosedError:
            return False
        rest: bytes | memoryview = wire
        if stream is not None:
            # The usual case: the replica keeps up, the socket takes it all, nothing queued.
            written = write_now(stream, wire)
            if written == len(wire):
                return True
            rest = memoryview(wire)[written:]
        size = len(rest)
        with self._queued_lock:
            if self._overflowed:
                return False
            if self._queued_bytes + size > self.max_buffer_bytes + self._allowance:
                self._overflowed = True
                self._disconnect_slow()
                return False
            self._queued_bytes += size
        try:
            if stream is None:  # its own framing: message by message, the usual way
                self._write_all(frames, size)
                return True
            future = stream.write(rest)
        except (WebSocketClosedError, StreamClosedError):
            self._release(size)
            return False
        future.add_done_callback(lambda _future: self._release(size))
        return True

    def on_message(self, message: str | bytes) -> None:
        # Replicas only listen; anything they send is ignored and counted.
        self.metrics.websocket_rejected.labels("replica_message").inc()

    def on_close(self) -> None:
        self._gone = True
        if self.table_name is not None:
            self.replicator.unsubscribe(self.table_name, self)
            self.table_name = None
        super().on_close()
