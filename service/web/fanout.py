"""One replication flush to every replica of an IOLoop: framed once, sent in one callback.

Why a module of its own: the replicated feed promises that an update's cost does
not grow with the audience beyond one socket write per replica. The framing and
the loop over replicas live here; a replica's own cap and write are
``ReplicateWebSocket.send_shared`` (``service/web/websocket.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tornado.ioloop import IOLoop

from service.metrics import Metrics
from service.web.outgoing import frame_header


class ReplicaFanout:
    """Each replication flush to every replica of this IOLoop, framed once, in one callback.

    The replicator thread frames the flush's messages as websocket frames once
    (the server sends every replica the same unmasked, uncompressed frames) and
    hands the IOLoop one callback for the whole audience. There, each replica
    costs one size check and one write of the same bytes: no copy, no callback
    and no metric update of its own. Handing every replica its own callback
    (and two writes, and two counter updates) made a flush to 500 replicas a
    long IOLoop stall, and the last replicas of each flush waited for the
    first ones: the tail latency grew with the audience.
    """

    def __init__(self, loop: IOLoop, metrics: Metrics) -> None:
        self.loop = loop
        self.metrics = metrics

    def broadcast(
        self,
        subscribers: list[Any],
        frames: list[bytes],
        failed: Callable[[Any], None],
    ) -> None:
        """From the replicator thread: queue ``frames`` for ``subscribers``; never blocks."""
        parts: list[bytes] = []
        for frame in frames:
            parts += (frame_header(len(frame)), frame)
        wire = b"".join(parts)
        self.loop.add_callback(self._send, subscribers, frames, wire, failed)

    def _send(
        self,
        subscribers: list[Any],
        frames: list[bytes],
        wire: bytes,
        failed: Callable[[Any], None],
    ) -> None:
        sent = 0
        for replica in subscribers:
            try:
                if replica.send_shared(wire, frames):
                    sent += 1
            except Exception:
                failed(replica)
        if sent:
            self.metrics.websocket_messages_sent.inc(sent * len(frames))
            self.metrics.websocket_bytes_sent.inc(sent * sum(len(f) for f in frames))
