"""Extract: what the consumer read, as :class:`RawBatch` es, the stage between consume and decode.

Two ways in. The native reader (``connectors/kafkabatch.py``) hands over a batch
as flat columns already, which become Arrow arrays and numpy views without a
copy or a Python object per record. The portable way reads confluent-kafka
``Message`` objects: one list per field, one method call per message and field,
the only per-record Python left on the path. Everything after works on whole
batches.
"""

from __future__ import annotations

from operator import methodcaller

import numpy as np
import pyarrow as pa

from connectors.base import UNREADABLE_HEADERS, RawBatch
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
        headers=[_headers(m) for m in messages] if headers else None,
    )


_read_headers = methodcaller("headers")


def _headers(message) -> list[tuple[str, bytes | None]] | None:
    """A message's headers, or ``UNREADABLE_HEADERS`` when the client cannot read them.

    Raising here would fail the whole batch, and the consumer would restart at the
    same offset for ever: one record would stop its table. confluent-kafka's
    ``headers()`` returns its list with the decode error still set; called as
    ``message.headers()``, the interpreter's specialised call skips the check, and
    the error surfaces later, outside this function. Called through
    ``methodcaller``, CPython checks the result and raises SystemError here.
    """
    try:
        return _read_headers(message)
    except (UnicodeDecodeError, SystemError, ValueError):
        return UNREADABLE_HEADERS


def _binary(count: int, data: bytes, offsets: bytes, valid: bytes | None) -> pa.Array:
    """A ``large_binary`` array over the reader's buffers (no copy of the data)."""
    validity = None
    if valid is not None:
        validity = pa.py_buffer(np.packbits(np.frombuffer(valid, np.uint8), bitorder="little"))
    return pa.Array.from_buffers(
        pa.large_binary(), count, [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def columnar_batches(columns: dict) -> list[RawBatch]:
    """A native reader's batch as one batch per topic, in Kafka order."""
    count = columns["count"]
    values = _binary(count, columns["values"], columns["value_offsets"], columns["value_valid"])
    keys = (
        _binary(count, columns["keys"], columns["key_offsets"], columns["key_valid"])
        if columns["keys"] is not None
        else pa.nulls(count, pa.large_binary())
    )
    stamps = columns["timestamps"]
    timestamps = (
        np.frombuffer(stamps, np.int64) if stamps is not None else np.full(count, -1, np.int64)
    )
    partitions = np.frombuffer(columns["partitions"], np.int32)
    offsets = np.frombuffer(columns["offsets"], np.int64)
    headers = columns["headers"]
    topics = columns["topics"]
    topic_ids = columns["topic_ids"]
    whole = RawBatch(topics[0], values, keys, timestamps, partitions, offsets, headers)
    if topic_ids is None:
        return [whole]
    ids = np.frombuffer(topic_ids, np.int32)
    batches = []
    for topic_id in np.unique(ids).tolist():
        part = whole.take(np.flatnonzero(ids == topic_id))
        part.topic = topics[topic_id]
        batches.append(part)
    return batches


def next_offsets(raw: RawBatch) -> dict[Partition, int]:
    """The next offset to read per partition after this batch."""
    if not len(raw):
        return {}
    partitions = np.asarray(raw.partitions, dtype=np.int64)
    offsets = np.asarray(raw.offsets, dtype=np.int64)
    # Grouped by partition with one stable sort, then the highest offset of each group
    # (a tenth of the cost of np.unique(return_inverse) + np.maximum.at).
    order = np.argsort(partitions, kind="stable")
    grouped = partitions[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    highest = np.maximum.reduceat(offsets[order], starts)
    return {
        (raw.topic, p): o + 1
        for p, o in zip(grouped[starts].tolist(), highest.tolist(), strict=True)
    }
