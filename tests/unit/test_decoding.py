"""Batch decoding: JSON to Arrow, bad records isolated, the per-key fold of indexed tables."""

from __future__ import annotations

import json
import random
from datetime import datetime

import pytest

from connectors.base import RawBatch
from connectors.decoding import BatchDecoder
from service.config import TableConfig, decode_spec

SCHEMA = {"id": "string", "px": "float", "qty": "integer", "ok": "boolean"}


def batch(values, keys=None, partitions=None) -> RawBatch:
    n = len(values)
    return RawBatch(
        topic="t",
        values=list(values),
        keys=list(keys) if keys is not None else [None] * n,
        timestamps_ms=[1_700_000_000_000] * n,
        partitions=list(partitions) if partitions is not None else [0] * n,
        offsets=list(range(100, 100 + n)),
    )


def decoder(**table) -> BatchDecoder:
    table.setdefault("topic", "t")
    table.setdefault("schema", SCHEMA)
    return BatchDecoder(decode_spec(TableConfig(**table)))


def test_a_clean_batch_decodes_in_one_piece():
    values = [
        json.dumps({"id": str(i), "px": i / 2, "qty": i, "ok": i % 2 == 0}).encode()
        for i in range(1000)
    ]
    out = decoder().decode(batch(values))
    assert out.errors == []
    assert out.rows.num_rows == 1000
    assert out.rows.column("qty").to_pylist() == list(range(1000))
    assert out.rows.column("ok").to_pylist()[:2] == [True, False]


def test_extra_fields_are_ignored_and_missing_fields_are_null():
    out = decoder().decode(batch([b'{"id": "a", "extra": {"deep": [1, {"x": null}]}}']))
    assert out.rows.to_pylist() == [{"id": "a", "px": None, "qty": None, "ok": None}]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "invalid_json"),
        (b'{"id": "a",', "invalid_json"),
        (b"", "invalid_json"),
        (b"   ", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b'{"id": "a"} {"id": "b"}', "invalid_json"),
        (b'{"id": "a"}}\n{"v": {"id": "smuggled"}', "invalid_json"),
        (b"[1, 2]", "not_object"),
        (b"42", "not_object"),
        (b'"text"', "not_object"),
        (b"true", "not_object"),
        (b"null", "not_object"),
        (b'{"qty": "many"}', "type_mismatch"),
        (b'{"qty": 1.5}', "type_mismatch"),
        (b'{"px": [1]}', "type_mismatch"),
        (b'{"ok": "yes"}', "type_mismatch"),
    ],
)
def test_a_bad_record_is_classified_and_its_neighbours_kept(value, reason):
    good = [json.dumps({"id": str(i), "qty": i}).encode() for i in range(64)]
    values = [*good[:31], value, *good[31:]]
    out = decoder().decode(batch(values))
    assert [e.reason for e in out.errors] == [reason], out.errors
    assert out.errors[0].offset == 131 and out.errors[0].topic == "t"
    assert out.rows.column("qty").to_pylist() == list(range(64))


def test_many_bad_records_scattered_through_a_large_batch():
    rng = random.Random(3)
    values, expected = [], []
    for i in range(5000):
        if rng.random() < 0.01:
            values.append(rng.choice([b"{", b"[]", b'{"qty": "x"}', b"null"]))
        else:
            values.append(json.dumps({"id": str(i), "qty": i}).encode())
            expected.append(i)
    out = decoder().decode(batch(values))
    assert out.rows.column("qty").to_pylist() == expected
    assert len(out.errors) == 5000 - len(expected)


def test_pretty_printed_json_is_a_good_record():
    out = decoder().decode(batch([b'{\n  "id": "a",\r\n  "qty": 1\n}', b'{"id": "b", "qty": 2}']))
    assert out.errors == []
    assert out.rows.column("id").to_pylist() == ["a", "b"]


@pytest.mark.parametrize(
    "stamp",
    [
        "2023-11-14T22:13:20Z",
        "2023-11-14 22:13:20",
        "2023-11-14T23:13:20+01:00",
        1700000000,
        1700000000000,
        1700000000000000,
        1700000000.0,
    ],
)
def test_datetime_columns_take_iso_strings_and_epoch_numbers(stamp):
    d = decoder(schema={"ts": "datetime", "day": "date"})
    out = d.decode(batch([json.dumps({"ts": stamp, "day": "2023-11-14"}).encode()]))
    assert out.errors == []
    row = out.rows.to_pylist()[0]
    assert row["ts"] == datetime(2023, 11, 14, 22, 13, 20)
    assert str(row["day"]) == "2023-11-14"


def test_a_datetime_column_switching_representation_keeps_decoding():
    d = decoder(schema={"ts": "datetime"})
    for value in [
        b'{"ts": 1700000000000}',
        b'{"ts": "2023-11-14T22:13:20Z"}',
        b'{"ts": 1700000000}',
    ]:
        out = d.decode(batch([value] * 10))
        assert out.errors == [] and out.rows.num_rows == 10


def test_tombstones_on_an_append_table_are_counted():
    out = decoder().decode(batch([b'{"id": "a"}', None], keys=[b"a", b"a"]))
    assert out.rows.num_rows == 1
    assert [e.reason for e in out.errors] == ["unexpected_tombstone"]


def test_a_batch_of_only_tombstones():
    out = decoder(index="id").decode(batch([None, None], keys=[b"a", b"b"]))
    assert out.rows is None
    assert out.removals.to_pylist() == ["a", "b"]


def test_limit_tables_only_keep_the_last_limit_rows_of_a_batch():
    values = [json.dumps({"qty": i}).encode() for i in range(50)]
    out = decoder(limit=10).decode(batch(values))
    assert out.rows.column("qty").to_pylist() == list(range(40, 50))


def test_the_index_comes_from_the_key_when_the_record_has_none():
    out = decoder(index="id").decode(batch([b'{"qty": 1}', b'{"qty": 2}'], keys=[b"a", None]))
    assert out.rows.to_pylist() == [{"id": "a", "px": None, "qty": 1, "ok": None}]
    assert [e.reason for e in out.errors] == ["missing_index"]


def test_integer_index_keys_parse_and_bad_keys_are_counted():
    d = decoder(schema={"n": "integer", "v": "string"}, index="n")
    out = d.decode(
        batch([b'{"n": 1, "v": "x"}', None, None, None], keys=[b"1", b"2", b"two", b"\xff"])
    )
    assert out.rows.to_pylist() == [{"n": 1, "v": "x"}]
    assert out.removals.to_pylist() == [2]
    assert sorted(e.reason for e in out.errors) == ["bad_key", "bad_key"]


def _reference_fold(ops):
    state = {}
    for key, record in ops:
        if record is None:
            state.pop(key, None)
        else:
            state[key] = record
    return state


@pytest.mark.parametrize("seed", range(5))
def test_the_batch_fold_keeps_kafka_order_per_key(seed):
    """Applying the decoded batch to a table equals folding its records in order."""
    rng = random.Random(seed)
    before = {f"k{i}": {"id": f"k{i}", "qty": -1} for i in range(0, 40, 2)}
    ops = []
    for i in range(400):
        key = f"k{rng.randrange(40)}"
        ops.append((key, None if rng.random() < 0.35 else {"id": key, "qty": i}))
    values = [None if r is None else json.dumps(r).encode() for _, r in ops]
    keys = [k.encode() for k, _ in ops]
    out = decoder(schema={"id": "string", "qty": "integer"}, index="id").decode(batch(values, keys))
    table = dict(before)
    for row in out.rows.to_pylist() if out.rows is not None else []:
        table[row["id"]] = row
    for key in out.removals.to_pylist() if out.removals is not None else []:
        table.pop(key, None)
    expected = _reference_fold([(k, v) for k, v in before.items()] + ops)
    assert table == expected
