"""Differential fuzzing of the JSON fast path (``connectors/decoders/_jsonrows.c``) against pyarrow.

The fast path parses untrusted bytes from Kafka in C with the GIL released, and must
either give exactly what the pyarrow path gives or decline the batch. Here thousands of
seeded records are generated (every field shape, number spelling, escape and encoding
trap a producer could send) and mutated byte by byte (flips, inserts of JSON's own
punctuation, deletions, truncations, repeated slices), then:

* every record the fast path accepts on its own is decoded by pyarrow too, and the values
  must be identical bit for bit (``-0.0`` is not ``0.0``), nulls included;
* every record pyarrow turns into a dead letter must have been declined by the fast path;
* mixed batches decode to the same rows, positions and dead-letter reasons with the fast
  path on and off (the decoders keep state, a datetime column's learnt spelling, across
  batches, so the batches run in sequence through one pair of decoders).

The seed is fixed so a failure reproduces; ``LIVETABLES_FUZZ_SEED`` and
``LIVETABLES_FUZZ_RECORDS`` explore further (scripts/asan-check.sh runs this file under
AddressSanitizer and UBSan).
"""

from __future__ import annotations

import json
import os
import random
import struct

import numpy as np
import pyarrow as pa
import pytest

from connectors.decoders import _jsonrows
from connectors.decoding import BatchDecoder
from service.config import TableConfig, decode_spec
from tests.unit.test_json_fast_path import _raw

SCHEMA = {"i": "integer", "s": "string", "p": "float", "b": "boolean", "t": "datetime"}
FIELDS = [*SCHEMA, "x", "y"]  # x, y: fields no column takes
SEED = int(os.environ.get("LIVETABLES_FUZZ_SEED", "20240611"))
RECORDS = int(os.environ.get("LIVETABLES_FUZZ_RECORDS", "6000"))

# Numbers at the edges the fast path decides on: int64 limits, 2^53, Clinger's 10^22,
# the epoch unit thresholds (1e11, 1e14, 1e17), under- and overflow, -0.
EDGE_NUMBERS = [
    "0", "-0", "0.0", "-0.0", "1", "-1", "01", "1.", ".5", "-", "+1", "1e", "1e+", "1E-0",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "18446744073709551616", "9007199254740992", "9007199254740993",
    "1e22", "1e23", "1.5e-22", "1e-23", "123456789012345678", "1234567890123456789",
    "12345678901234567890", "0.1e1", "1e308", "1.7976931348623157e308", "1.8e308", "1e309",
    "4.9e-324", "2.2250738585072014e-308", "1e-400", "1e999999", "-1e999999",
    "1e99999999999999999999", "99999999999", "100000000000", "99999999999999",
    "100000000000000", "99999999999999999", "100000000000000000", "9.2233720368547758e18",
    "-9.2233720368547758e21", "1.7e9", "1700000000123", "1700000000123456",
    "1700000000123456789", "NaN", "-NaN", "Infinity", "-Infinity", "nan", "inf", "0x10",
    "1_000", "1" * 400, "0." + "0" * 400 + "1", "1" * 20 + "." + "9" * 20, "1" * 129,
]  # fmt: skip
STRINGS = [
    "", "AAPL", "é", "日本", "😀", "\u0000", "\u001f", "\u007f", "\u2028", "\ufeff", '"', "\\",
    "a" * 300,
]  # fmt: skip
# Escaped text as raw JSON source (between the quotes), valid and not.
RAW_STRINGS = [
    b"\\u0000", b"\\ud83d\\ude00", b"\\ud800", b"\\udc00", b"\\ud800\\u0041", b"\\ud800x",
    b"\\u00e9", b"\\u00E9", b"\\u12", b"\\x41", b"\\'", b"\\/", b"\\b\\f\\n\\r\\t",
    b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b"\xf0\x9f\x98", b"\xc3", b"\x80", b"raw\ttab", b"raw\x00nul", b"\xef\xbb\xbf",
]  # fmt: skip
TOKENS = [b"true", b"false", b"null", b"[]", b"{}", b'[1,{"a":[null]}]', b'{"i":{"i":1}}']
BAD_TOKENS = [b"True", b"nul", b"[1,]", b"{,}", b"[", b"}"]
WHITESPACE = [b"", b" ", b"\t", b"\n", b"\r\n", b"  \n\t "]
BAD_WHITESPACE = [b"\x0c", b"\x0b", b"\xc2\xa0", b"\x00"]
PUNCTUATION = b'{}[]:,"\\-+.eE0123456789 \t\n\x00\xff\xc3tfnu'


def _number(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(EDGE_NUMBERS).encode()
    if roll < 0.6:
        return str(rng.randint(-(2**64), 2**64)).encode()
    if roll < 0.8:
        return repr(rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)).encode()
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
    text = ("-" if rng.random() < 0.3 else "") + digits.lstrip("0") or "0"
    if rng.random() < 0.5:
        text += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
    if rng.random() < 0.5:
        text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 400))
    return text.encode()


def _string(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(0, 3)):
        if rng.random() < 0.6:
            text = rng.choice(STRINGS)
            parts.append(json.dumps(text, ensure_ascii=rng.random() < 0.5)[1:-1].encode())
        else:
            parts.append(rng.choice(RAW_STRINGS))
    return b'"' + b"".join(parts) + b'"'


def _field_value(rng: random.Random, name: str, traps: float) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return b"null"
    if roll < 0.1 + traps:  # any shape at all, for any column
        if rng.random() < 0.6:
            return rng.choice([_number, _string])(rng)
        return rng.choice(TOKENS + BAD_TOKENS)
    if name == "i":
        if rng.random() < traps:
            return _number(rng)
        return str(rng.randint(-(2**63), 2**63 - 1) >> rng.randrange(64)).encode()
    if name in ("p", "t"):
        return (
            _number(rng)
            if rng.random() < 0.15 + traps * 2
            else repr(rng.uniform(-1e12, 1e12)).encode()
        )
    if name == "b":
        return rng.choice([b"true", b"false"])
    if name == "s":
        return (
            _string(rng) if rng.random() < traps * 4 else json.dumps(rng.choice(STRINGS)).encode()
        )
    if rng.random() < traps * 3:
        return rng.choice([_number(rng), _string(rng)])
    return rng.choice([*TOKENS, b'"unknown"', b"-12.5e3"])


def _key(rng: random.Random, name: str, traps: float) -> bytes:
    roll = rng.random() * 0.5 / (traps + 0.01)
    if roll < 0.03:
        return b'"\\u00' + f"{ord(name[0]):02x}".encode() + name[1:].encode() + b'"'
    if roll < 0.05:
        return b'"' + name.encode() + rng.choice([b"\xff", b"\xc3\xa9", b" ", b"\\n"]) + b'"'
    return b'"' + name.encode() + b'"'


def _record(rng: random.Random) -> bytes:
    """One JSON object built from parts: mostly valid, with every trap now and then."""
    traps = rng.choice([0.0, 0.02, 0.1, 0.3])
    names = [n for n in FIELDS if rng.random() < 0.7]
    rng.shuffle(names)
    if names and rng.random() < traps / 2:
        names.append(rng.choice(names))  # a field given twice
    spaces = WHITESPACE + BAD_WHITESPACE if rng.random() < traps * 2 else WHITESPACE
    ws = (lambda: rng.choice(spaces)) if rng.random() < 0.3 else (lambda: b"")
    items = [
        ws() + _key(rng, n, traps) + ws() + b":" + ws() + _field_value(rng, n, traps) + ws()
        for n in names
    ]
    text = b"{" + b",".join(items) + b"}"
    roll = rng.random() / (traps + 0.01)
    if roll < 0.02:
        text = b"\xef\xbb\xbf" + text
    elif roll < 0.04:
        text = text + rng.choice([b" x", b"{}", b" \x00", b",", b"\n{}"])
    elif roll < 0.06:
        text = rng.choice([b"null", b"[]", b"1", b'"s"', b"", b" ", b"[" + text + b"]"])
    return text


def _mutate(rng: random.Random, value: bytes) -> bytes:
    data = bytearray(value)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data and at < len(data):
            data[at] = rng.randrange(256)
        elif kind == 1:
            data[at:at] = bytes([rng.choice(PUNCTUATION)])
        elif kind == 2 and data:
            del data[at : at + rng.randint(1, 4)]
        elif kind == 3:
            del data[at:]
        else:
            piece = data[at : at + rng.randint(1, 12)]
            data[at:at] = piece * rng.randint(1, 3)
    return bytes(data)


def _corpus(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    records = []
    while len(records) < count:
        record = _record(rng)
        records.append(_mutate(rng, record) if rng.random() < 0.3 else record)
    return records


def _exact(rows: pa.Table) -> list[tuple]:
    """Rows with floats as bit patterns (-0.0 and 0.0 differ, NaN equals itself) and
    timestamps as their int64 milliseconds (epochs past year 9999 are valid data)."""

    def exact(v):
        return ("f", struct.pack("<d", v)) if isinstance(v, float) else v

    columns = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in rows.columns]
    return [
        tuple(exact(v) for v in row) for row in zip(*(c.to_pylist() for c in columns), strict=True)
    ]


def _decoders() -> tuple[BatchDecoder, BatchDecoder]:
    fast = BatchDecoder(decode_spec(TableConfig(topic="t", schema=SCHEMA)))
    slow = BatchDecoder(decode_spec(TableConfig(topic="t", schema=SCHEMA)))
    slow.values._fast_columns = None
    assert fast.values._fast_columns is not None, "the fast path is not compiled"
    return fast, slow


def _array(values: list[bytes]) -> pa.Array:
    return pa.array(values, pa.large_binary())


def test_every_record_the_fast_path_accepts_is_what_pyarrow_reads():
    fast, slow = _decoders()
    records = _corpus(SEED, RECORDS)
    accepted = [r for r in records if fast.values._fast_rows(_array([r])) is not None]
    declined = len(records) - len(accepted)
    # Both answers must be exercised, or the fuzzing proves nothing.
    assert len(accepted) > RECORDS // 4 and declined > RECORDS // 10, (len(accepted), declined)
    together = fast.values._fast_rows(_array(accepted))
    assert together is not None, "records accepted one by one were declined together"
    decoded = slow.decode(_raw(accepted))
    if decoded.errors or decoded.rows is None or _exact(together) != _exact(decoded.rows):
        for record in accepted:  # name the first record the two disagree on
            alone = slow.decode(_raw([record]))
            mine = fast.values._fast_rows(_array([record]))
            assert not alone.errors, (record, alone.errors[0].reason, alone.errors[0].detail)
            assert _exact(mine) == _exact(alone.rows), record
    assert together.schema == decoded.rows.schema
    assert _exact(together) == _exact(decoded.rows)


def test_mixed_batches_give_the_same_rows_and_dead_letters_with_and_without_the_fast_path():
    fast, slow = _decoders()
    rng = random.Random(SEED + 1)
    records = _corpus(SEED + 2, RECORDS // 2)
    dead_letters = 0
    at = 0
    while at < len(records):
        size = rng.choice([1, 2, 7, 40, 200])
        batch = records[at : at + size]
        at += size
        got, expected = fast.decode(_raw(batch)), slow.decode(_raw(batch))
        assert got.records == expected.records
        assert [(e.offset, e.reason) for e in got.errors] == [
            (e.offset, e.reason) for e in expected.errors
        ], batch
        if expected.rows is None:
            assert got.rows is None
        else:
            assert got.rows.schema == expected.rows.schema
            assert _exact(got.rows) == _exact(expected.rows), batch
        dead_letters += len(expected.errors)
        # Nothing lost silently: every record is a row or a dead letter.
        kept = 0 if expected.rows is None else expected.rows.num_rows
        assert kept + len(expected.errors) == len(batch)
    assert dead_letters > 0


HOSTILE = {
    "10 MB string": b'{"s": "' + b"a" * (10 << 20) + b'", "i": 1}',
    "10 MB escaped string": b'{"s": "' + b"\\u00e9" * (2 << 20) + b'"}',
    "10 MB unknown string": b'{"x": "' + b"\xc3\xa9" * (5 << 20) + b'", "i": 2}',
    "100k fields": b"{" + b",".join(b'"f%d": %d' % (i, i) for i in range(100_000)) + b', "i": 3}',
    "100k known fields": b"{" + b",".join(b'"i": %d' % i for i in range(100_000)) + b"}",
    "nesting 100k deep": b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b', "i": 4}',
    "nesting 100k deep objects": b'{"x": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}",
    "nesting unterminated": b'{"x": ' + b"[" * 1_000_000,
    "nesting 64 deep": b'{"x": ' + b"[" * 63 + b"]" * 63 + b', "i": 5}',
    "nesting 65 deep": b'{"x": ' + b"[" * 64 + b"]" * 64 + b', "i": 6}',
    "400 digits float": b'{"p": ' + b"7" * 400 + b"}",
    "400 digits integer": b'{"i": ' + b"7" * 400 + b"}",
    "1 MB of zeros after the point": b'{"p": 0.' + b"0" * (1 << 20) + b"1}",
    "1 MB exponent": b'{"p": 1e' + b"9" * (1 << 20) + b"}",
    "exponent 1e999999": b'{"p": 1e999999, "t": 1}',
    "epoch 1e999999": b'{"t": 1e999999}',
    "whitespace flood": b"{" + b" \t\r\n" * (1 << 20) + b'"i": 7' + b"\n" * (1 << 20) + b"}",
    "whitespace after": b'{"i": 8}' + b" " * (1 << 20),
    "unterminated string": b'{"s": "' + b"a" * (1 << 20),
    "unterminated object": b'{"i": 9, "s": "x"',
    "trailing garbage": b'{"i": 10} garbage',
    "two documents": b'{"i": 11}{"i": 12}',
    "byte order mark": b'\xef\xbb\xbf{"i": 13}',
    "nul bytes": b'{"i": 14}\x00',
    "nul in string": b'{"s": "a\x00b"}',
    "escaped nul": b'{"s": "a\\u0000b"}',
    "lone high surrogate": b'{"s": "\\ud800"}',
    "lone low surrogate": b'{"s": "\\udfff"}',
    "overlong slash": b'{"s": "\xc0\xaf"}',
    "encoded surrogate": b'{"s": "\xed\xa0\x80"}',
    "invalid UTF-8 in an unknown field": b'{"x": "\xff\xfe(", "i": 15}',
    "invalid UTF-8 in a key": b'{"\xff": 1, "i": 16}',
    "NaN": b'{"p": NaN}',
    "Infinity": b'{"p": -Infinity}',
    "1e400 in an unknown field": b'{"x": 1e400, "i": 19}',
    "400 digits in an unknown field": b'{"x": ' + b"9" * 400 + b', "i": 20}',
    "1e-400 in an unknown field": b'{"x": -1e-400, "i": 21}',
    "1.8e308 in an unknown field": b'{"x": [0.00018e312], "i": 22}',
    "duplicate unknown field": b'{"x": 1, "x": 2, "i": 17}',
    "duplicate known field": b'{"i": 1, "i": 18}',
    "minus zero": b'{"p": -0, "i": -0, "t": -0.0}',
    "empty": b"",
    "only whitespace": b" \n ",
    "a number": b"42",
    "null": b"null",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_record_decodes_the_same_and_its_neighbours_are_kept(name):
    fast, slow = _decoders()
    batch = [b'{"i": -1, "s": "before"}', HOSTILE[name], b'{"i": -2, "s": "after"}']
    got, expected = fast.decode(_raw(batch)), slow.decode(_raw(batch))
    assert [(e.offset, e.reason) for e in got.errors] == [
        (e.offset, e.reason) for e in expected.errors
    ]
    assert _exact(got.rows) == _exact(expected.rows)
    kept = got.rows.column("s").to_pylist()
    assert kept[0] == "before" and kept[-1] == "after"
    assert got.rows.num_rows + len(got.errors) == 3
    assert all(e.detail for e in got.errors), "a dead letter without a reason"


def test_arguments_that_do_not_describe_the_data_are_refused_not_read():
    """The Python side always passes an Arrow array's own buffers; these prove a wrong call
    is an exception, never a read outside the buffers (count * 8 wrapping around, offsets
    running backwards past the end)."""
    columns = [(b"s", 3)]
    data = pa.py_buffer(b'{"s": "a"}{"s": "b"}')
    with pytest.raises(ValueError):
        _jsonrows.parse(2**61, pa.py_buffer(np.zeros(1, np.int64)), data, columns)
    with pytest.raises(ValueError):
        _jsonrows.parse(2, pa.py_buffer(np.array([0, 10], np.int64)), data, columns)
    backwards = np.array([0, 1 << 40, 20], np.int64)
    with pytest.raises(ValueError):
        _jsonrows.parse(2, pa.py_buffer(backwards), data, columns)
    with pytest.raises(ValueError):
        _jsonrows.parse(1, pa.py_buffer(np.array([0, 21], np.int64)), data, columns)
    with pytest.raises(ValueError):
        _jsonrows.parse(1, pa.py_buffer(np.array([-1, 10], np.int64)), data, columns)
    good = _jsonrows.parse(2, pa.py_buffer(np.array([0, 10, 20], np.int64)), data, columns)
    assert good is not None
