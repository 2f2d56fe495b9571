"""Strings that are not UTF-8 never reach a table, whatever the format or where the string sits.

Each case puts one record with the bytes ``\\xff\\xfe(`` inside a string among good records:
the bad record is counted as ``invalid_utf8`` at its offset, its neighbours are kept, and
every string column of the result is valid UTF-8 (what a client reading the table needs).
"""

from __future__ import annotations

import io
import json

import fastavro
import pyarrow as pa
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from connectors.base import UNREADABLE_HEADERS, DecodedBatch, RawBatch
from connectors.decoding import BatchDecoder
from service.config import TableConfig, decode_spec

BAD = b"\xff\xfe("


def batch(values, keys=None, headers=None) -> RawBatch:
    n = len(values)
    return RawBatch(
        topic="t",
        values=list(values),
        keys=list(keys) if keys is not None else [None] * n,
        timestamps_ms=[1_700_000_000_000] * n,
        partitions=[0] * n,
        offsets=list(range(100, 100 + n)),
        headers=headers,
    )


def decode(raw: RawBatch, **table) -> DecodedBatch:
    table.setdefault("topic", "t")
    return BatchDecoder(decode_spec(TableConfig(**table))).decode(raw)


def assert_clean(out: DecodedBatch, bad_offsets: list[int]) -> None:
    assert [(e.offset, e.reason) for e in out.errors] == [(o, "invalid_utf8") for o in bad_offsets]
    if out.rows is not None:
        out.rows.validate(full=True)
        out.rows.to_pylist()  # what a client's read needs: every string decodes


def test_json_value_the_record_from_the_report_is_counted_and_the_rest_kept():
    values = [json.dumps({"id": f"r{i}", "n": i}).encode() for i in range(6)]
    values[3] = b'{"id": "' + BAD + b'", "n": 7}'
    out = decode(batch(values), schema={"id": "string", "n": "integer"})
    assert_clean(out, [103])
    assert out.rows.column("id").to_pylist() == ["r0", "r1", "r2", "r4", "r5"]
    assert "'id'" in out.errors[0].detail


def test_json_nested_field_and_an_ignored_field():
    values = [
        b'{"id": "a", "p": {"name": "' + BAD + b'"}}',
        b'{"id": "b", "p": {"name": "ok"}, "ignored": "' + BAD + b'"}',
    ]
    out = decode(
        batch(values), schema={"id": "string", "name": "string"}, fields={"name": "p.name"}
    )
    # A string no column reads never reaches the table: that record is good.
    assert_clean(out, [100])
    assert out.rows.to_pylist() == [{"id": "b", "name": "ok"}]


def test_json_that_fails_to_parse_because_of_bad_bytes_is_invalid_utf8_not_noise():
    values = [b'{"id": "a", "n": "' + BAD + b'"}', b"\x00\x01binary noise", b'{"id": "b", "n": 1}']
    out = decode(batch(values), schema={"id": "string", "n": "integer"})
    assert [e.reason for e in out.errors] == ["invalid_utf8", "invalid_json"]
    assert out.rows.to_pylist() == [{"id": "b", "n": 1}]


def test_indexed_json_table_folds_around_the_bad_record():
    values = [
        b'{"id": "a", "n": "1"}',
        b'{"id": "a", "n": "' + BAD + b'"}',
        b'{"id": "' + BAD + b'"}',
    ]
    out = decode(batch(values), schema={"id": "string", "n": "string"}, index="id")
    assert_clean(out, [101, 102])
    assert out.rows.to_pylist() == [{"id": "a", "n": "1"}]


def test_string_key_column_and_a_json_key():
    values = [json.dumps({"n": i}).encode() for i in range(3)]
    out = decode(
        batch(values, keys=[b"k0", BAD, b"k2"]),
        schema={"n": "integer"},
        key={"column": "k"},
    )
    assert_clean(out, [101])
    assert out.rows.column("k").to_pylist() == ["k0", "k2"]
    out = decode(
        batch(values, keys=[b'{"k": "a"}', b'{"k": "' + BAD + b'"}', b'{"k": "c"}']),
        schema={"n": "integer"},
        key={"format": "json", "fields": {"k": "k"}},
    )
    assert_clean(out, [101])
    assert out.rows.column("k").to_pylist() == ["a", "c"]


def test_a_header_column_that_is_not_utf8():
    values = [json.dumps({"n": i}).encode() for i in range(3)]
    headers = [[("src", b"x")], [("src", BAD)], [("other", BAD)]]
    out = decode(batch(values, headers=headers), schema={"n": "integer"}, headers={"src": "src"})
    assert_clean(out, [101])
    assert out.rows.to_pylist() == [{"n": 0, "src": "x"}, {"n": 2, "src": None}]


def test_headers_the_client_could_not_read_make_their_record_a_bad_one():
    """The portable reader marks them (a header name that is not UTF-8): the record is an
    invalid_utf8 dead letter for a table with header columns, the others are kept."""
    values = [json.dumps({"n": i}).encode() for i in range(3)]
    headers = [[("src", b"x")], UNREADABLE_HEADERS, None]
    out = decode(batch(values, headers=headers), schema={"n": "integer"}, headers={"src": "src"})
    assert_clean(out, [101])
    assert out.errors[0].detail == "header"
    assert out.rows.to_pylist() == [{"n": 0, "src": "x"}, {"n": 2, "src": None}]


def test_csv():
    out = decode(
        batch([b"a,1", BAD + b",2", b"c,3"]), format="csv", schema={"s": "string", "n": "integer"}
    )
    assert_clean(out, [101])
    assert out.rows.column("s").to_pylist() == ["a", "c"]


def avro(record: dict, schema: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


@pytest.mark.parametrize("columnar", [True, False])
def test_avro_columnar_and_record_by_record(columnar):
    fields = [{"name": "s", "type": "string"}]
    if not columnar:  # an array field leaves the schema to fastavro, one record at a time
        fields.append({"name": "xs", "type": {"type": "array", "items": "long"}, "default": []})
    schema = {"type": "record", "name": "S", "fields": fields}
    good = avro({"s": "ok", "xs": []}, schema)
    bad = good.replace(b"\x04ok", b"\x06" + BAD)
    out = decode(
        batch([good, bad, good]),
        format="avro",
        format_options={"schema": schema},
        schema={"s": "string"},
    )
    assert_clean(out, [101])
    assert out.rows.column("s").to_pylist() == ["ok", "ok"]


@pytest.mark.parametrize("syntax", ["proto3", "proto2"])
def test_protobuf_both_syntaxes(tmp_path, syntax):
    """proto3's runtime refuses such a string, proto2's hands it over as bytes."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="u.proto", package="u", syntax=syntax)
    message = file.message_type.add(name="M")
    message.field.add(name="s", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    # A repeated field: no column reads it, but it keeps the columnar path honest too.
    message.field.add(name="n", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    path = tmp_path / "u.desc"
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=[file]).SerializeToString())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    M = message_factory.GetMessageClass(pool.FindMessageTypeByName("u.M"))
    good = M(s="ok", n=1).SerializeToString()
    bad = b"\x0a\x03" + BAD + b"\x10\x02"
    out = decode(
        batch([good, bad, good]),
        format="protobuf",
        format_options={"descriptor_file": str(path), "message": "u.M"},
        schema={"s": "string", "n": "integer"},
    )
    assert_clean(out, [101])
    assert out.rows.column("s").to_pylist() == ["ok", "ok"]


def _invalid_string_array() -> pa.Array:
    offsets = pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00\x05\x00\x00\x00")
    return pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ok" + BAD)])


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_arrow_ipc_stream_with_a_string_that_is_not_utf8_loses_the_whole_message():
    """Arrow's reader does not validate strings; the message's good row goes with its bad one."""
    good = ipc(pa.table({"s": ["a", "b"]}))
    bad = ipc(pa.table({"s": _invalid_string_array()}))
    out = decode(batch([good, bad, good]), format="arrow", schema={"s": "string"})
    assert_clean(out, [101])
    assert out.rows.column("s").to_pylist() == ["a", "b", "a", "b"]
