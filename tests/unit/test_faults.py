"""Oversized records are cut out before decoding, dead-letter copies fit the producer,
restarts back off; librdkafka's offset resets are logged."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest

from connectors.backoff import Backoff
from connectors.base import RawBatch
from connectors.deadletter import FRAMING_ALLOWANCE, fit_copy, headers_size, split_oversized
from connectors.kafkalog import LibrdkafkaLog


def _batch(
    values: list[bytes | None], keys: list[bytes | None] | None = None, arrow: bool = False
) -> RawBatch:
    """A batch as the Python consumer path builds it (lists), or as the native reader does."""
    n = len(values)
    keys = keys if keys is not None else [f"k{i}".encode() for i in range(n)]
    if arrow:
        return RawBatch(
            "t",
            pa.array(values, pa.large_binary()),
            pa.array(keys, pa.large_binary()),
            np.array([1000 + i for i in range(n)], dtype=np.int64),
            np.array([i % 2 for i in range(n)], dtype=np.int32),
            np.arange(100, 100 + n, dtype=np.int64),
        )
    return RawBatch(
        topic="t",
        values=values,
        keys=keys,
        timestamps_ms=[1000 + i for i in range(n)],
        partitions=[i % 2 for i in range(n)],
        offsets=list(range(100, 100 + n)),
    )


@pytest.mark.parametrize("arrow", [False, True], ids=["lists", "arrow"])
def test_a_batch_within_the_limit_is_passed_through_untouched(arrow):
    raw = _batch([b"a" * 10, None, b"b" * 20], arrow=arrow)
    kept, errors = split_oversized(raw, 20)
    assert kept is raw and errors == []


@pytest.mark.parametrize("arrow", [False, True], ids=["lists", "arrow"])
def test_oversized_values_become_errors_and_every_column_stays_aligned(arrow):
    raw = _batch([b"a" * 10, b"x" * 50, None, b"b" * 20, b"y" * 21], arrow=arrow)
    kept, errors = split_oversized(raw, 20)
    assert kept.values == [b"a" * 10, None, b"b" * 20]
    assert kept.keys == [b"k0", b"k2", b"k3"]
    assert list(kept.offsets) == [100, 102, 103]
    assert list(kept.partitions) == [0, 0, 1]
    assert list(kept.timestamps_ms) == [1000, 1002, 1003]
    assert [(e.partition, e.offset, e.reason) for e in errors] == [
        (1, 101, "oversized"),
        (0, 104, "oversized"),
    ]
    assert "50 bytes" in errors[0].detail


@pytest.mark.parametrize("arrow", [False, True], ids=["lists", "arrow"])
def test_keys_count_towards_the_size_of_tables_that_keep_them(arrow):
    raw = _batch([b"a" * 10, b"b" * 10, None], keys=[b"k", b"K" * 50, b"T" * 50], arrow=arrow)
    assert split_oversized(raw, 20)[0] is raw  # keys not kept: only values count
    kept, errors = split_oversized(raw, 20, count_keys=True)
    assert kept.values == [b"a" * 10] and kept.keys == [b"k"]
    assert [(e.offset, e.reason) for e in errors] == [(101, "oversized"), (102, "oversized")]
    assert "key and value 60 bytes" in errors[0].detail


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


# -- dead-letter copies that fit the producer ---------------------------------------------

REASON = [("livetables-error-reason", b"oversized"), ("livetables-source", b"t/0/1")]


def _size(value, key, headers) -> int:
    return len(value or b"") + len(key or b"") + headers_size(headers) + FRAMING_ALLOWANCE


def test_a_copy_that_fits_is_the_record_as_it_was():
    copy = fit_copy(b"v" * 100, b"k", [("h", b"1")], REASON, 10_000)
    assert copy == (b"v" * 100, b"k", [("h", b"1"), *REASON], False)


def test_an_oversized_value_is_cut_to_fit_and_says_so():
    original = b"x" * 5_000_000
    value, key, headers, cut = fit_copy(original, b"key", [("h", b"1")], REASON, 1_000_000)
    assert cut and original.startswith(value) and 900_000 < len(value) < 1_000_000
    assert key == b"key" and ("h", b"1") in headers
    marks = dict(headers)
    assert marks["livetables-truncated"] == b"value"
    assert marks["livetables-original-size"] == b"5000000"
    assert _size(value, key, headers) <= 1_000_000


def test_huge_headers_then_a_huge_key_go_too():
    big_headers = [("h", b"y" * 2_000_000)]
    value, key, headers, cut = fit_copy(b"v" * 10, b"k", big_headers, REASON, 1_000_000)
    assert cut and dict(headers)["livetables-truncated"] == b"headers"
    assert (value, key) == (b"v" * 10, b"k") and _size(value, key, headers) <= 1_000_000
    value, key, headers, cut = fit_copy(
        b"v" * 2_000_000, b"k" * 2_000_000, big_headers, REASON, 1_000_000
    )
    assert cut and dict(headers)["livetables-truncated"] == b"value,headers,key"
    assert key is None and 0 < len(value) < 1_000_000
    assert _size(value, key, headers) <= 1_000_000


def test_restart_backoff_doubles_to_a_ceiling_and_resets_after_a_healthy_run():
    backoff = Backoff(first=0.5, longest=4.0, healthy_after=60.0)
    assert [backoff.delay(1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(61.0) == 0.5
    assert backoff.delay(0.1) == 1.0


def test_the_dead_letter_producer_logs_through_python_logging_not_stderr(caplog, capfd):
    """librdkafka's lines of the shared producer reach the service log, named, throttled.

    A real producer pointed at a port nothing listens on: librdkafka reports the
    refused connection through the ``logger`` it was given.
    """
    from connectors.deadletter import DeadLetterSink
    from service.localkafka.broker import free_port
    from tests.helpers import wait_until

    def lines() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.getMessage().startswith("dead-letter producer: librdkafka")
        ]

    with caplog.at_level(logging.DEBUG, logger="connectors.kafka.librdkafka"):
        sink = DeadLetterSink(f"127.0.0.1:{free_port()}", {"debug": "broker"}, lambda *_: None)
        try:
            wait_until(lines, timeout=30, what="a librdkafka line in the service log")
        finally:
            sink.close(timeout=1)
    assert "rdkafka" not in capfd.readouterr().err
