"""One replica whose feed fails never costs the others their frames (real Replicator and
tables; the subscribers are plain objects with the methods the protocol asks for)."""

from __future__ import annotations

import pyarrow as pa

from connectors.base import DecodedBatch
from service.config import parse_config
from service.ingest.writer import TableWriter
from service.metrics import Metrics
from service.replication import UPDATE, Replicator
from service.tables import TableHost


class Listening:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def deliver_snapshot(self, frame: bytes) -> bool:
        return True

    def deliver(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)


class Broken:
    """A subscriber whose delivery raises, as one on a closed event loop does."""

    def deliver_snapshot(self, frame: bytes) -> bool:
        return True

    def deliver(self, frames: list[bytes]) -> None:
        raise RuntimeError("Event loop is closed")


def test_a_subscriber_that_raises_is_dropped_and_the_others_still_get_every_frame():
    config = parse_config(
        {"tables": {"t": {"topic": "t", "schema": {"id": "string", "n": "integer"}}}}, "<test>"
    )
    host = TableHost(config)
    replicator = Replicator(host)
    first, broken, last = Listening(), Broken(), Listening()
    for subscriber in (first, broken, last):
        replicator.subscribe("t", subscriber)
    rows = pa.table({"id": ["a"], "n": [1]})
    batch = DecodedBatch(rows=rows, records=1)
    writer = TableWriter(host, replicator, Metrics("test"))
    for _ in range(2):
        writer.write("t", batch)
        replicator.flush()
    assert len(first.frames) == len(last.frames) == 2
    assert all(frame.startswith(UPDATE) for frame in first.frames + last.frames)
    assert replicator.subscriber_count("t") == 2
    host.close()
