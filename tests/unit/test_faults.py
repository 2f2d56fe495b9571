"""Oversized records are cut out before decoding; librdkafka's offset resets are logged."""

from __future__ import annotations

import logging

from connectors.base import RawBatch
from connectors.deadletter import split_oversized
from connectors.kafkalog import LibrdkafkaLog


def _batch(values: list[bytes | None]) -> RawBatch:
    n = len(values)
    return RawBatch(
        topic="t",
        values=values,
        keys=[f"k{i}".encode() for i in range(n)],
        timestamps_ms=[1000 + i for i in range(n)],
        partitions=[i % 2 for i in range(n)],
        offsets=list(range(100, 100 + n)),
    )


def test_a_batch_within_the_limit_is_passed_through_untouched():
    raw = _batch([b"a" * 10, None, b"b" * 20])
    kept, errors = split_oversized(raw, 20)
    assert kept is raw and errors == []


def test_oversized_values_become_errors_and_every_column_stays_aligned():
    raw = _batch([b"a" * 10, b"x" * 50, None, b"b" * 20, b"y" * 21])
    kept, errors = split_oversized(raw, 20)
    assert kept.values == [b"a" * 10, None, b"b" * 20]
    assert kept.keys == [b"k0", b"k2", b"k3"]
    assert kept.offsets == [100, 102, 103]
    assert kept.partitions == [0, 0, 1]
    assert kept.timestamps_ms == [1000, 1002, 1003]
    assert [(e.partition, e.offset, e.reason) for e in errors] == [
        (1, 101, "oversized"),
        (0, 104, "oversized"),
    ]
    assert "50 bytes" in errors[0].detail


def test_offset_resets_are_logged_as_warnings_with_the_table(caplog):
    sink = LibrdkafkaLog("trades", "earliest")
    line = (
        "[thrd:main]: trades [0]: offset reset (at offset 8 (leader epoch 0), broker 1) to "
        "offset BEGINNING (leader epoch -1): fetch failed due to requested offset not "
        "available on the broker: Broker: Offset out of range"
    )
    with caplog.at_level(logging.INFO):
        sink.log(logging.WARNING, "%s [%s] %s", "OFFSET", "rdkafka#consumer-1", line)
        for _ in range(5):  # chatter is rate-limited per facility
            sink.log(
                logging.ERROR,
                "%s [%s] %s",
                "FAIL",
                "rdkafka#consumer-1",
                "[thrd:x]: connect failed",
            )
    warnings = [r.getMessage() for r in caplog.records]
    assert "table trades: offset out of range, resuming at the earliest" in warnings[0]
    assert "trades [0]: offset reset" in warnings[0]
    assert len(warnings) == 2 and "connect failed" in warnings[1]
