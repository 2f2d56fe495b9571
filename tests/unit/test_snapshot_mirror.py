"""The mirror folds batches exactly as the engine applies them (checked against a real table).

Random streams of batches (upserts with nulls, removals, keys deleted and
re-created, rolling windows overflowing) go to a real Perspective table the way
``TableHost.apply`` sends them and to a mirror; at random points the mirror is
cut, folded and compacted, and what it folds to must be what the table holds.
"""

from __future__ import annotations

import random

import perspective
import pyarrow as pa
import pytest

from connectors.base import DecodedBatch
from connectors.schema import arrow_schema
from service.snapshots.mirror import TableMirror

COLUMNS = {"k": "string", "v": "integer", "w": "float", "note": "string"}
SCHEMA = arrow_schema(COLUMNS)


def _rows(rng: random.Random, keys: list[str]) -> pa.Table:
    return pa.table(
        {
            "k": keys,
            "v": [rng.choice([None, rng.randrange(1000)]) for _ in keys],
            "w": [rng.choice([None, rng.random()]) for _ in keys],
            "note": [rng.choice([None, "x", "yy", ""]) for _ in keys],
        },
        schema=SCHEMA,
    )


def _indexed_batch(rng: random.Random, universe: list[str]) -> DecodedBatch:
    """Upserts and removals on disjoint keys, one operation per key (as the decoder folds)."""
    keys = rng.sample(universe, rng.randrange(1, 12))
    split = rng.randrange(len(keys) + 1)
    upserts, removals = keys[:split], keys[split:]
    return DecodedBatch(
        rows=_rows(rng, upserts) if upserts else None,
        removals=pa.array(removals, pa.string()) if removals else None,
    )


def _apply(table: perspective.Table, batch: DecodedBatch) -> None:
    if batch.rows is not None:
        table.update(batch.rows)
    if batch.removals is not None:
        table.remove(batch.removals.to_pylist())


def _content(table: perspective.Table) -> list[dict]:
    view = table.view()
    try:
        return pa.ipc.open_stream(view.to_arrow()).read_all().to_pylist()
    finally:
        view.delete()


def _normalised(rows: list[dict]) -> list[dict]:
    return [{c: r[c] for c in COLUMNS} for r in rows]


@pytest.mark.parametrize("seed", range(6))
def test_indexed_fold_equals_the_engine(seed):
    rng = random.Random(seed)
    universe = [f"key{i}" for i in range(40)]
    client = perspective.Server().new_local_client()
    table = client.table(COLUMNS, index="k")
    mirror = TableMirror(SCHEMA, "k", None)
    for step in range(120):
        batch = _indexed_batch(rng, universe)
        _apply(table, batch)
        offset = step + 1
        mirror.record(batch, {("t", 0): offset})
        if rng.random() < 0.15:
            cut = mirror.cut()
            rows = mirror.fold(cut)
            mirror.compact(cut, rows)
            expected = sorted(_normalised(_content(table)), key=lambda r: r["k"])
            got = sorted(rows.to_pylist(), key=lambda r: r["k"])
            assert got == expected, f"seed {seed}, step {step}"
            assert cut.offsets == {("t", 0): offset}
    cut = mirror.cut()
    got = sorted(mirror.fold(cut).to_pylist(), key=lambda r: r["k"])
    assert got == sorted(_normalised(_content(table)), key=lambda r: r["k"])


@pytest.mark.parametrize(("seed", "limit"), [(0, 7), (1, 50), (2, 1), (3, 500)])
def test_rolling_window_fold_equals_the_engine_in_order(seed, limit):
    rng = random.Random(seed)
    client = perspective.Server().new_local_client()
    table = client.table(COLUMNS, limit=limit)
    mirror = TableMirror(SCHEMA, None, limit)
    serial = 0
    for _ in range(60):
        count = rng.randrange(1, 3 * limit + 2)
        keys = [f"r{serial + i}" for i in range(count)]
        serial += count
        batch = DecodedBatch(rows=_rows(rng, keys))
        table.update(batch.rows)
        mirror.record(batch, {("t", 0): serial})
        if rng.random() < 0.3:
            cut = mirror.cut()
            mirror.compact(cut, mirror.fold(cut))
    folded = mirror.fold(mirror.cut()).to_pylist()
    assert folded == _normalised(_content(table))  # chronological: the oldest go first
    assert len(folded) == min(limit, serial)


def test_append_fold_keeps_every_row_in_order():
    rng = random.Random(9)
    mirror = TableMirror(SCHEMA, None, None)
    expected: list[str] = []
    for n in range(30):
        keys = [f"{n}-{i}" for i in range(rng.randrange(0, 20))]
        expected += keys
        mirror.record(DecodedBatch(rows=_rows(rng, keys) if keys else None), {("t", 0): n + 1})
        if n % 7 == 0:
            cut = mirror.cut()
            mirror.compact(cut, mirror.fold(cut))
    assert mirror.fold(mirror.cut()).column("k").to_pylist() == expected


def test_a_cut_leaves_out_the_parts_of_a_batch_whose_offsets_are_not_in_yet():
    rng = random.Random(1)
    mirror = TableMirror(SCHEMA, None, None)
    mirror.record(DecodedBatch(rows=_rows(rng, ["a"])), {("t", 0): 1})
    # A batch split in two by the pipeline: the first part carries no offsets.
    mirror.record(DecodedBatch(rows=_rows(rng, ["b"])), {})
    cut = mirror.cut()
    assert mirror.fold(cut).column("k").to_pylist() == ["a"] and cut.offsets == {("t", 0): 1}
    mirror.compact(cut, mirror.fold(cut))
    mirror.record(DecodedBatch(rows=_rows(rng, ["c"])), {("t", 0): 3})
    cut = mirror.cut()
    assert mirror.fold(cut).column("k").to_pylist() == ["a", "b", "c"]
    assert cut.offsets == {("t", 0): 3}


def test_refused_batches_move_the_offsets_only_and_starts_count_as_applied():
    rng = random.Random(2)
    mirror = TableMirror(SCHEMA, None, None)
    mirror.on_assigned({("t", 0): 40, ("t", 1): 0})
    mirror.record(None, {("t", 0): 45})  # the engine refused this batch
    mirror.record(DecodedBatch(rows=_rows(rng, ["z"])), {("t", 1): 2})
    cut = mirror.cut()
    assert cut.offsets == {("t", 0): 45, ("t", 1): 2}
    assert mirror.fold(cut).column("k").to_pylist() == ["z"]


def test_seeding_starts_over_from_loaded_rows():
    rng = random.Random(3)
    mirror = TableMirror(SCHEMA, "k", None)
    mirror.seed(_rows(rng, ["a", "b"]), {("t", 0): 10})
    mirror.record(DecodedBatch(rows=None, removals=pa.array(["a"])), {("t", 0): 11})
    cut = mirror.cut()
    assert mirror.fold(cut).column("k").to_pylist() == ["b"]
    assert cut.offsets == {("t", 0): 11}
