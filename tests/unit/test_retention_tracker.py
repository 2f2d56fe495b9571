"""The retention bookkeeping against a plain model: the same rows expire, none twice."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from connectors.base import DecodedBatch
from service.config import parse_config, resolve_config
from service.config.tables import ROW_COLUMN, TIMESTAMP_COLUMN
from service.retention.book import TableRetention
from service.retention.tracker import KeyLog, RowLog


@pytest.mark.parametrize("limit", [None, 50, 400])
def test_row_log_expires_exactly_the_rows_past_the_cutoff(limit):
    rng = random.Random(limit or 1)
    log = RowLog()
    alive: dict[int, int] = {}  # row number -> time, as a model
    removed: list[int] = []
    now = 10_000
    for _tick in range(200):
        for _batch in range(rng.randrange(0, 4)):
            # Out-of-order times within and across batches, as partitions interleave.
            times = np.array(
                [now + rng.randrange(-3000, 200) for _ in range(rng.randrange(1, 40))],
                dtype=np.int64,
            )
            ids = log.append(times)
            alive.update(zip(ids.tolist(), times.tolist(), strict=True))
            if limit is not None:
                # The limit keeps the last `limit` rows to arrive, less those that expired.
                rolled = log.roll(limit).tolist()
                assert rolled == sorted(i for i in alive if i < log.next_id - limit)
                for i in rolled:
                    del alive[i]
                removed.extend(rolled)
        cutoff = now - 2000
        expired = sorted(log.expire(cutoff).tolist())
        assert expired == sorted(i for i, t in alive.items() if t < cutoff)
        for i in expired:
            del alive[i]
        removed.extend(expired)
        now += rng.randrange(50, 300)
    assert len(removed) == len(set(removed)), "a row was removed twice"
    assert len(log) >= len(alive)
    # What is tracked stays near what is alive: memory follows the window, not the stream.
    assert len(log) <= len(alive) + 200


def test_key_log_expires_keys_by_their_last_upsert_and_forgets_removed_ones():
    rng = random.Random(3)
    log = KeyLog(pa.string())
    model: dict[str | None, int] = {}
    now = 100_000
    for tick in range(300):
        keys = [
            rng.choice([*(f"k{i}" for i in range(60)), None]) for _ in range(rng.randrange(0, 30))
        ]
        keys = list(dict.fromkeys(keys))  # a folded batch: one operation per key
        upserts = [k for k in keys if rng.random() > 0.2]
        removals = [k for k in keys if k not in upserts]
        times = np.array([now - rng.randrange(0, 4000) for _ in upserts], dtype=np.int64)
        log.record(pa.array(upserts, pa.string()), times, pa.array(removals, pa.string()))
        model.update(zip(upserts, times.tolist(), strict=True))
        for k in removals:
            model.pop(k, None)
        if tick % 3 == 0:
            cutoff = now - 3000
            expired = log.expire(cutoff).to_pylist()
            expected = [k for k, t in model.items() if t < cutoff]
            assert sorted(expired, key=str) == sorted(expected, key=str)
            for k in expired:
                del model[k]
        now += rng.randrange(10, 200)


def _table(config: dict):
    resolved, _ = resolve_config(parse_config({"tables": {"t": config}}))
    return resolved.tables["t"]


def test_an_append_table_gets_row_numbers_and_its_limit_as_removals():
    table = _table({"topic": "x", "schema": {"id": "string"}, "retention": "1m", "limit": 3})
    assert table.engine_index == ROW_COLUMN and table.engine_limit is None
    retention = TableRetention("t", table)
    stamps = pa.array([1000, 1001, 1002, 1003, 1004], pa.int64()).cast(pa.timestamp("ms"))
    rows = pa.table({"id": list("abcde"), TIMESTAMP_COLUMN: stamps})
    prepared = retention.prepare(DecodedBatch(rows=rows), now=5000)
    # The batch is cut to the limit; the time column never reaches the table.
    assert prepared.rows.column_names == ["id", ROW_COLUMN]
    assert prepared.rows.column("id").to_pylist() == ["c", "d", "e"]
    assert prepared.rows.column(ROW_COLUMN).to_pylist() == [0.0, 1.0, 2.0]
    assert prepared.removals is None
    more = retention.prepare(DecodedBatch(rows=rows.slice(0, 2)), now=5000)  # a, b: 3, 4
    assert more.removals.to_pylist() == [0.0, 1.0]  # the oldest two make room
    assert retention.expire(now=1003 + 60_000).to_pylist() == [3.0, 4.0]  # older than 1003
    assert retention.expire(now=1005 + 60_000).to_pylist() == [2.0]  # "c" went with the limit
    assert retention.expire(now=10**9) is None


def test_a_row_without_a_record_timestamp_ages_from_when_it_was_applied():
    retention = TableRetention(
        "t", _table({"topic": "x", "schema": {"id": "string"}, "retention": "1m"})
    )
    stamps = pa.array([1000, -1], pa.int64()).cast(pa.timestamp("ms"))
    retention.prepare(
        DecodedBatch(rows=pa.table({"id": ["a", "b"], TIMESTAMP_COLUMN: stamps})), 5000
    )
    assert retention.expire(now=1001 + 60_000).to_pylist() == [0.0]
    assert retention.expire(now=4999 + 60_000) is None  # not 1970: applied at 5 s
    assert retention.expire(now=5001 + 60_000).to_pylist() == [1.0]


def test_an_indexed_table_ages_rows_by_its_retention_column():
    table = _table(
        {
            "topic": "x",
            "schema": {"id": "string", "ts": "datetime"},
            "index": "id",
            "retention": "10s",
            "retention_column": "ts",
        }
    )
    assert table.engine_index == "id" and not table.kafka_timestamps
    retention = TableRetention("t", table)
    rows = pa.table(
        {
            "id": ["a", "b", "c"],
            "ts": pa.array([0, 5000, None], pa.int64()).cast(pa.timestamp("ms")),
        }
    )
    prepared = retention.prepare(DecodedBatch(rows=rows), now=20_000)
    assert prepared.rows.column_names == ["id", "ts"]
    assert retention.expire(now=12_000).to_pylist() == ["a"]
    assert retention.expire(now=29_000).to_pylist() == ["b"]
    assert retention.expire(now=30_001).to_pylist() == ["c"]  # no time: applied at 20 s
