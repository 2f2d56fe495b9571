"""Conflation: batches waiting for the applier, merged into fewer, larger updates."""

from __future__ import annotations

import pyarrow as pa

from connectors.base import DecodedBatch
from service.ingest.applier import CONFLATE_MAX_ROWS, Work, conflate


def _work(table: str, first: int, rows: int, partition: int = 0) -> Work:
    ids = pa.table({"id": pa.array(range(first, first + rows), pa.int64())})
    batch = DecodedBatch(
        rows=ids, records=rows, timestamps_ms=pa.array([1000 + first] * rows, pa.int64())
    )
    return Work(table, batch, {("topic", partition): first + rows})


def test_append_batches_merge_up_to_the_cap_in_order():
    size = CONFLATE_MAX_ROWS // 4
    pending = [_work("a", i * size, size, partition=i % 2) for i in range(6)]
    merged = conflate(pending, frozenset({"a"}))
    assert [w.batch.row_count for w in merged] == [4 * size, 2 * size]
    assert merged[0].batch.rows.column("id").to_pylist() == list(range(4 * size))
    assert merged[0].batch.records == 4 * size
    assert len(merged[0].batch.timestamps_ms) == 4 * size
    assert merged[0].positions == {("topic", 0): 3 * size, ("topic", 1): 4 * size}


def test_a_rolling_window_keeps_only_its_last_limit_rows_whatever_was_waiting():
    pending = [_work("w", i * 50_000, 50_000) for i in range(10)]
    merged = conflate(pending, frozenset({"w"}), {"w": 120_000})
    assert len(merged) == 1
    batch = merged[0].batch
    assert batch.rows.column("id").to_pylist() == list(range(500_000 - 120_000, 500_000))
    assert batch.records == 500_000  # every record consumed is still counted and timed
    assert len(batch.timestamps_ms) == 500_000
    assert merged[0].positions == {("topic", 0): 500_000}


def test_indexed_tables_and_different_tables_are_never_merged():
    pending = [_work("i", 0, 10), _work("i", 10, 10), _work("a", 0, 10), _work("i", 20, 10)]
    merged = conflate(pending, frozenset({"a"}))
    assert [(w.table, w.batch.row_count) for w in merged] == [
        ("i", 10),
        ("i", 10),
        ("a", 10),
        ("i", 10),
    ]
