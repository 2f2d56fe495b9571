"""Snapshot files: what is written reads back, what is damaged is refused, never half-read."""

from __future__ import annotations

import datetime as dt
import os
import time

import perspective
import pyarrow as pa
import pytest

from connectors.schema import arrow_schema
from service.snapshots import files
from service.snapshots.files import SnapshotMeta, Unusable

SCHEMA = {
    "s": "string",
    "i": "integer",
    "f": "float",
    "b": "boolean",
    "d": "date",
    "t": "datetime",
}


def _rows() -> pa.Table:
    """Two chunks, the second with nulls in every column (the case perspective 4.3.0 mangles)."""
    schema = arrow_schema(SCHEMA)
    first = pa.table(
        {
            "s": ["a", "b"],
            "i": [1, 2],
            "f": [1.5, 2.5],
            "b": [True, False],
            "d": [dt.date(2024, 1, 2), dt.date(2024, 1, 3)],
            "t": [dt.datetime(2024, 1, 2, 3, 4, 5), dt.datetime(2024, 1, 3)],
        },
        schema=schema,
    )
    nulls = {name: pa.nulls(1, f.type) for name, f in zip(SCHEMA, schema, strict=True)}
    second = pa.table(nulls, schema)
    return pa.concat_tables([second, first])


def _meta(rows: int = 3) -> SnapshotMeta:
    return SnapshotMeta("trades", "f" * 64, {("trades", 0): 7, ("trades", 1): 3}, rows, 1.5e9)


def test_a_snapshot_reads_back_as_written(tmp_path):
    rows = _rows()
    path, size = files.write_snapshot(tmp_path, _meta(), rows)
    assert path.parent == tmp_path / "trades" and path.stat().st_size == size
    loaded = files.read_snapshot(path)
    assert loaded.meta == _meta()
    assert loaded.rows.to_pylist() == rows.to_pylist()
    assert loaded.rows.column(0).num_chunks == 1  # one record batch
    assert files.read_meta(path) == _meta()
    assert [p.name for p in (tmp_path / "trades").iterdir()] == [path.name]  # no temp file left


def test_the_body_loads_into_perspective_in_one_update_with_its_nulls(tmp_path):
    path, _ = files.write_snapshot(tmp_path, _meta(), _rows())
    loaded = files.read_snapshot(path)
    client = perspective.Server().new_local_client()
    table = client.table(SCHEMA)
    table.update(loaded.body)
    view = table.view()
    try:
        columns = view.to_columns()
    finally:
        view.delete()
    assert columns["s"] == [None, "a", "b"]
    assert columns["i"] == [None, 1, 2]
    assert columns["f"] == [None, 1.5, 2.5]
    assert columns["b"] == [None, True, False]


@pytest.mark.parametrize("keep", [0, 24, 100, -24, -1])
def test_a_truncated_file_is_refused(tmp_path, keep):
    path, size = files.write_snapshot(tmp_path, _meta(), _rows())
    data = path.read_bytes()
    path.write_bytes(data[: keep % size])
    with pytest.raises(Unusable) as caught:
        files.read_snapshot(path)
    assert caught.value.reason == "corrupt"


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_a_flipped_byte_is_refused(tmp_path, where):
    path, size = files.write_snapshot(tmp_path, _meta(), _rows())
    data = bytearray(path.read_bytes())
    at = int((size - files.TRAILER.size) * where)
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(Unusable) as caught:
        files.read_snapshot(path)
    assert caught.value.reason == "corrupt"


def test_a_file_that_is_no_snapshot_is_refused(tmp_path):
    path = tmp_path / "trades" / "00000000000000000001-deadbeef.snapshot"
    path.parent.mkdir()
    path.write_bytes(os.urandom(4096))
    with pytest.raises(Unusable):
        files.read_meta(path)
    with pytest.raises(Unusable):
        files.read_snapshot(path)


def test_newest_first_and_pruning(tmp_path):
    written = [files.write_snapshot(tmp_path, _meta(), _rows())[0] for _ in range(4)]
    assert files.candidates(tmp_path, "trades") == written[::-1]
    stale = tmp_path / "trades" / ".00000000000000000001-0.snapshot.tmp"
    fresh = tmp_path / "trades" / ".00000000000000000002-0.snapshot.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - files.STALE_TEMP_S - 10
    os.utime(stale, (old, old))
    files.prune(tmp_path, "trades")
    assert files.candidates(tmp_path, "trades") == written[:-3:-1]
    assert not stale.exists() and fresh.exists()  # another writer's file in progress stays
    assert files.candidates(tmp_path, "other") == []
