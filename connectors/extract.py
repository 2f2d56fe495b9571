"""Extract: librdkafka messages as a :class:`RawBatch`, the stage between consume and decode.

The only per-record Python on the ingest path: one list per field, read with
one method call per message and field. Everything after works on whole
batches.
"""

from __future__ import annotations

import numpy as np

from connectors.base import RawBatch
from connectors.source import Partition


def raw_batches(topics: list[str], messages: list, headers: bool = False) -> list[RawBatch]:
    """The messages of one consume() call as one batch per topic, in Kafka order."""
    if len(topics) == 1:
        return [raw_batch(topics[0], messages, headers)]
    by_topic: dict[str, list] = {}
    for m in messages:
        by_topic.setdefault(m.topic(), []).append(m)
    return [raw_batch(topic, ms, headers) for topic, ms in by_topic.items()]


def raw_batch(topic: str, messages: list, headers: bool = False) -> RawBatch:
    """Columns of a batch: one list per field, the only per-record Python on the path."""
    return RawBatch(
        topic=topic,
        values=[m.value() for m in messages],
        keys=[m.key() for m in messages],
        timestamps_ms=[m.timestamp()[1] for m in messages],
        partitions=[m.partition() for m in messages],
        offsets=[m.offset() for m in messages],
        headers=[m.headers() for m in messages] if headers else None,
    )


def next_offsets(raw: RawBatch) -> dict[Partition, int]:
    """The next offset to read per partition after this batch."""
    partitions = np.asarray(raw.partitions, dtype=np.int64)
    offsets = np.asarray(raw.offsets, dtype=np.int64)
    unique, inverse = np.unique(partitions, return_inverse=True)
    highest = np.full(len(unique), -1, dtype=np.int64)
    np.maximum.at(highest, inverse, offsets)
    return {(raw.topic, int(p)): int(o) + 1 for p, o in zip(unique, highest, strict=True)}
