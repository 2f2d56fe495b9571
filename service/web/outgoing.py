"""What a websocket sends: queued from any thread, written by the IOLoop, capped in bytes.

Messages produced on other threads (a table update notifies views and replicas
on the applier thread; engine workers answer requests) are handed to the
IOLoop, the only thread that writes to sockets, and every byte queued for a
client is counted. A client that falls behind by more than
``server.max_client_buffer_bytes`` is disconnected (reason ``slow``), so a
stalled browser cannot grow server memory without bound. A replica's snapshot
counts too, with an allowance of its own (``server.max_snapshot_bytes``) on top
of the cap.
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import Any

from tornado.concurrent import Future
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol13

from service.metrics import Metrics
from service.web.base import BaseWebSocket

log = logging.getLogger(__name__)

FIN_BINARY = 0x82  # a final frame (FIN) of a binary message (opcode 2), RFC 6455 5.2


class BoundedWebSocket(BaseWebSocket):
    """A websocket whose outgoing queue is capped in bytes; open sessions are counted."""

    def initialize(self, metrics: Metrics, sessions: set[Any], max_buffer_bytes: int) -> None:
        self.metrics = metrics
        self.sessions = sessions
        self.max_buffer_bytes = max_buffer_bytes
        self.loop = IOLoop.current()
        self._queued_bytes = 0
        self._allowance = 0  # bytes of a snapshot still queued, allowed on top of the cap
        self._queued_lock = threading.Lock()
        self._overflowed = False

    def session_opened(self) -> None:
        """Count the session (the service closes it at shutdown) and watch its token."""
        # Frames go out when written: with Nagle's algorithm on (tornado's default), a small
        # frame waits for the ACK of the previous one, which a client's delayed ACK holds
        # back up to 40 ms (measured: p99 Kafka-to-replica latency 50-80 ms, one client).
        self.set_nodelay(True)
        self.sessions.add(self)
        self.metrics.websocket_sessions.set(len(self.sessions))
        self.close_when_token_expires()

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

    def on_close(self) -> None:
        if self in self.sessions:
            self.sessions.discard(self)
            self.metrics.websocket_sessions.set(len(self.sessions))
            self.metrics.websocket_disconnects.labels(self.disconnect_reason).inc()
        super().on_close()

    def shutdown(self) -> None:
        """Close from the server side (service stopping)."""
        self.disconnect_reason = "shutdown"
        self.close(1001, "server shutting down")


def frame_header(size: int) -> bytes:
    """The header of one final, unmasked binary frame of ``size`` bytes (RFC 6455 5.2)."""
    if size < 126:
        return struct.pack("!BB", FIN_BINARY, size)
    if size <= 0xFFFF:
        return struct.pack("!BBH", FIN_BINARY, 126, size)
    return struct.pack("!BBQ", FIN_BINARY, 127, size)


def write_now(stream: IOStream, data: bytes) -> int:
    """Bytes of ``data`` written straight to the socket of an idle plain stream (maybe 0).

    Why: a replication flush writes the same bytes to every replica, one after another
    on the IOLoop, so what each write costs is paid once per replica per flush, and the
    last replica waits for all the others. Tornado's ``write()`` appends to the
    stream's buffer, writes, then makes a Future and resolves it, and the byte cap's
    release is one more callback: several times the cost of the ``send()`` itself. When
    nothing is waiting in the stream's buffer, writing to the socket at once keeps the
    bytes in order and needs none of that; what the socket does not take (a reader
    that is behind) goes through ``write()`` as usual, capped. TLS streams and any
    error (a peer that is gone) take the usual path too, which reports them.
    """
    if type(stream) is not IOStream or stream.writing() or stream.closed():
        return 0
    try:
        return stream.socket.send(data)
    except OSError:  # would block, interrupted, or gone: tornado's own write handles it
        return 0


def shareable_stream(handler: WebSocketHandler) -> Any:
    """The connection's stream if pre-framed bytes can go to it as they are, else None.

    Raises WebSocketClosedError for a connection that is gone. Compressed or
    masked connections (none here: the server negotiates no compression) need
    their own framing.
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
        return None
    return stream


def _write_shared(handler: WebSocketHandler, payload: bytes) -> Future[None]:
    """Send ``payload`` as one binary message without copying it for this client.

    Tornado's ``write_message`` builds each frame as ``header + payload``: a copy
    per client, so a 17.9 MB snapshot sent to 120 replicas that do not read
    held 2 GB. The same bytes go to every replica (snapshots and deltas are
    shared), so the header is written on its own and the payload handed to the
    stream as is (tornado keeps buffers over 2 KB as views, not copies): the
    payload is in memory once, however many clients wait for it. Both writes
    happen in one IOLoop callback, so no other frame can come between them.
    Compressed or masked connections go through ``write_message``.
    """
    stream = shareable_stream(handler)
    if stream is None:
        return handler.write_message(payload, binary=True)
    try:
        stream.write(frame_header(len(payload)))
        return stream.write(payload)
    except StreamClosedError:
        raise WebSocketClosedError() from None


def _consume_exception(future: Future[None]) -> None:
    if not future.cancelled():
        future.exception()
