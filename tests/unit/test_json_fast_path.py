"""The JSON fast path (``connectors/decoders/_jsonrows.c``) gives exactly what pyarrow gives.

Every batch is decoded twice, by the table's decoder as it runs and by the same decoder
with the fast path switched off (pyarrow's reader for everything), and the rows, the
positions they came from and the bad records must be identical. The batches mix the
records a topic really carries (flat objects, every number shape, escapes, non-ASCII
text, nulls, missing and unknown fields, nested unknown fields, whitespace) with
records the fast path must decline (type mismatches, duplicates, malformed JSON, NaN,
invalid UTF-8, numbers out of range), so both of its answers are checked.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest

from connectors.decoders import json as json_decoder
from connectors.decoding import BatchDecoder
from connectors.schema import arrow_schema
from connectors.spec import DecoderSpec, FormatOptions
from service.config import TableConfig, decode_spec

SCHEMA = {"i": "integer", "s": "string", "p": "float", "b": "boolean", "t": "string"}

CLEAN_NUMBERS = [
    "0", "-0", "7", "-12", "123456789", "9223372036854775807", "-9223372036854775808",
    "1.5", "-2.25", "0.1", "100.0", "1e3", "1E-3", "2.5e+10", "-0.0", "3.14159265358979",
    "123456789012345678901234567890", "0.000000000000000000000001", "1.7976931348623157e308",
    "4.9e-300", "0.30000000000000004", "9007199254740993", "1234567.125e-2",
]  # fmt: skip
STRINGS = [
    "", "AAPL", "with space", 'quote " inside', "back\\slash", "tab\tnewline\n", "é ü 日本",
    "emoji 😀", "\u0000nul", "control \u0001", "/slash",
]  # fmt: skip


def _value(rng: random.Random) -> bytes:
    """One record as a producer might write it (json.dumps or by hand)."""
    fields: dict = {}
    if rng.random() < 0.9:
        fields["i"] = rng.choice([rng.randint(-(2**63), 2**63 - 1), rng.randint(-5, 5), None])
    if rng.random() < 0.9:
        fields["s"] = rng.choice([*STRINGS, None])
    if rng.random() < 0.9:
        fields["p"] = rng.choice([rng.uniform(-1e6, 1e6), rng.randint(-100, 100), None])
    if rng.random() < 0.8:
        fields["b"] = rng.choice([True, False, None])
    if rng.random() < 0.3:
        fields["unknown"] = rng.choice([1, "x", [1, {"a": None}], {"n": [True, 2.5]}, None])
    items = list(fields.items())
    rng.shuffle(items)
    text = json.dumps(dict(items), ensure_ascii=rng.random() < 0.5)
    if rng.random() < 0.2:
        text = text.replace(":", " : ").replace(",", " ,\n ")
    if rng.random() < 0.2:
        number = rng.choice(CLEAN_NUMBERS)
        text = text[:-1] + ("," if len(text) > 2 else "") + f'"p": {number}' + "}"
        if '"p"' in text[: text.rfind('"p"')]:
            text = json.dumps({"p": json.loads(number)})
    return text.encode()


BAD = [
    b'{"i": 1.0}', b'{"i": "12"}', b'{"i": true}', b'{"i": 9223372036854775808}',
    b'{"s": 12}', b'{"p": "1.5"}', b'{"b": 1}', b'{"i": 1, "i": 2}', b'{"p": NaN}',
    b'{"p": 1e400}', b'{"s": "\\ud800"}', b'{"s": "\xff"}', b'{"x": "\xff", "i": 1}',
    b'{"i": 1} {"i": 2}', b'[1, 2]', b'null', b'"text"', b"", b'{"i": 01}', b'{"i": -}',
    b'{"x": [1, 2,]}', b'{"s": "raw \x01 control"}', b'{"\\u0069": 5}', b'{"x": NaN, "i": 3}',
    b'{"p": 1e-400}', b'{"s": "a', b'{"i": 1,}', b'{"t": {"nested": 1}}',
]  # fmt: skip


def _decoders() -> tuple[BatchDecoder, BatchDecoder]:
    fast = BatchDecoder(decode_spec(TableConfig(topic="t", schema=SCHEMA)))
    slow = BatchDecoder(decode_spec(TableConfig(topic="t", schema=SCHEMA)))
    slow.values._fast_columns = None
    return fast, slow


def _raw(values: list[bytes | None]):
    from connectors.base import RawBatch

    n = len(values)
    return RawBatch(
        "t",
        pa.array(values, pa.large_binary()),
        pa.nulls(n, pa.large_binary()),
        np.full(n, 1000, np.int64),
        np.zeros(n, np.int32),
        np.arange(n, dtype=np.int64),
    )


def _comparable(rows: pa.Table) -> list[dict]:
    """Rows as Python values, NaN spelled out (it never equals itself)."""
    return [
        {k: "NaN" if isinstance(v, float) and v != v else v for k, v in row.items()}
        for row in rows.to_pylist()
    ]


def _same(fast_batch, slow_batch) -> None:
    assert fast_batch.records == slow_batch.records
    if slow_batch.rows is None:
        assert fast_batch.rows is None
    else:
        assert fast_batch.rows.schema == slow_batch.rows.schema
        assert _comparable(fast_batch.rows) == _comparable(slow_batch.rows)
    assert [(e.offset, e.reason) for e in fast_batch.errors] == [
        (e.offset, e.reason) for e in slow_batch.errors
    ]


def test_the_fast_path_is_compiled_and_taken_for_flat_scalar_schemas():
    fast, _ = _decoders()
    assert json_decoder._jsonrows is not None
    assert fast.values._fast_columns is not None
    values = pa.array([b'{"i": 1, "s": "x", "p": 2.5, "b": true}'], pa.large_binary())
    assert fast.values._fast_rows(values) is not None


@pytest.mark.parametrize("seed", range(20))
def test_clean_batches_decode_exactly_as_pyarrow_decodes_them(seed):
    rng = random.Random(seed)
    fast, slow = _decoders()
    values = [_value(rng) for _ in range(500)]
    accepted = fast.values._fast_rows(pa.array(values, pa.large_binary()))
    _same(fast.decode(_raw(values)), slow.decode(_raw(values)))
    # Records like these are what the fast path is for: it must not decline them.
    assert accepted is not None


@pytest.mark.parametrize("bad", BAD, ids=range(len(BAD)))
def test_a_batch_with_a_record_it_declines_decodes_exactly_as_pyarrow_does(bad):
    rng = random.Random(len(bad))
    fast, slow = _decoders()
    values = [_value(rng) for _ in range(30)]
    values.insert(rng.randrange(len(values)), bad)
    _same(fast.decode(_raw(values)), slow.decode(_raw(values)))


def test_each_number_shape_converts_to_the_same_float():
    fast, slow = _decoders()
    values = [f'{{"p": {n}}}'.encode() for n in CLEAN_NUMBERS]
    rows = fast.values._fast_rows(pa.array(values, pa.large_binary()))
    assert rows is not None
    expected = slow.decode(_raw(values)).rows.column("p").to_pylist()
    got = rows.column("p").to_pylist()
    assert [np.float64(x).tobytes() for x in got] == [np.float64(x).tobytes() for x in expected]


def test_schemas_it_does_not_cover_go_to_pyarrow():
    nested = DecoderSpec("json", FormatOptions(), {"px": ("price", "last")})
    decoder = json_decoder.JsonDecoder(nested, arrow_schema({"px": "float"}))
    assert decoder._fast_columns is None
    flat = DecoderSpec("json", FormatOptions(), {})
    assert json_decoder.JsonDecoder(flat, arrow_schema({"d": "date"}))._fast_columns is None
    assert json_decoder.JsonDecoder(flat, arrow_schema({"p": "float"}))._fast_columns


def test_datetime_columns_take_epoch_numbers_on_the_fast_path_and_strings_through_pyarrow():
    schema = {"id": "integer", "at": "datetime"}
    fast = BatchDecoder(decode_spec(TableConfig(topic="t", schema=schema)))
    slow = BatchDecoder(decode_spec(TableConfig(topic="t", schema=schema)))
    slow.values._fast_columns = None
    epochs = [b'{"id": 1, "at": 1700000000}', b'{"id": 2, "at": 1700000000123}']
    epochs += [b'{"id": 3, "at": 1700000000123456}', b'{"id": 4, "at": null}', b'{"id": 5}']
    epochs += [b'{"id": 6, "at": 1.7e9}', b'{"id": 7, "at": -5}']
    assert fast.values._fast_rows(pa.array(epochs, pa.large_binary())) is not None
    _same(fast.decode(_raw(epochs)), slow.decode(_raw(epochs)))
    iso = [b'{"id": 8, "at": "2024-01-02T03:04:05"}', b'{"id": 9, "at": "2024-01-02 03:04:05Z"}']
    for batch in (iso, epochs + iso, iso + epochs):
        _same(fast.decode(_raw(batch)), slow.decode(_raw(batch)))
