"""Formats without a broker: plain Avro and Protobuf, CSV, Arrow, nested JSON, column mapping."""

from __future__ import annotations

import io
import json
from datetime import datetime

import fastavro
import pyarrow as pa
import pytest
from google.protobuf import descriptor_pb2

from connectors.base import RawBatch
from connectors.decoding import BatchDecoder
from service.config import ConfigError, TableConfig, decode_spec, parse_config, resolve_config

T0 = 1_700_000_000_000


def batch(values, keys=None, headers=None) -> RawBatch:
    n = len(values)
    return RawBatch(
        topic="t",
        values=list(values),
        keys=list(keys) if keys is not None else [None] * n,
        timestamps_ms=[T0 + i for i in range(n)],
        partitions=[i % 3 for i in range(n)],
        offsets=list(range(10, 10 + n)),
        headers=headers,
    )


def decoder(**table) -> BatchDecoder:
    table.setdefault("topic", "t")
    return BatchDecoder(decode_spec(TableConfig(**table)))


def ms(value: datetime) -> int:
    return (
        int(value.timestamp() * 1000)
        if value.tzinfo
        else int((value - datetime(1970, 1, 1)).total_seconds() * 1000)
    )


# -- timestamps -----------------------------------------------------------------------


STAMPS = {
    "2023-11-14T22:13:20Z": T0,
    "2023-11-14T23:13:20.250+01:00": T0 + 250,
    "2023-11-14T22:13:20.5": T0 + 500,
    "1700000000": T0,
    "1700000000.75": T0 + 750,
    "1700000000000": T0,
    "1700000000000000": T0,
    "1700000000000000000": T0,
}


def test_csv_datetime_columns_take_every_timestamp_form():
    out = decoder(format="csv", schema={"ts": "datetime"}).decode(
        batch([s.encode() for s in STAMPS])
    )
    assert out.errors == []
    assert [ms(v) for v in out.rows.column("ts").to_pylist()] == list(STAMPS.values())


def test_json_datetime_columns_take_iso_strings_and_epoch_numbers():
    values = [
        json.dumps({"ts": float(s) if s[0].isdigit() and "-" not in s else s}).encode()
        for s in STAMPS
    ]
    out = decoder(schema={"ts": "datetime"}).decode(batch(values))
    assert out.errors == []
    assert [ms(v) for v in out.rows.column("ts").to_pylist()] == list(STAMPS.values())


# -- JSON paths and keys --------------------------------------------------------------


def test_json_nested_paths_and_null_parents():
    out = decoder(
        schema={"sym": "string", "px": "float", "venue": "string"},
        fields={"px": "quote.px.last", "venue": "quote.venue"},
    ).decode(
        batch(
            [
                b'{"sym": "A", "quote": {"px": {"last": 1.5}, "venue": "X"}}',
                b'{"sym": "B", "quote": null}',
                b'{"sym": "C", "quote": {"px": null}}',
                b'{"sym": "D", "quote": {"px": {"last": "not a number"}}}',
            ]
        )
    )
    assert out.rows.to_pylist() == [
        {"sym": "A", "px": 1.5, "venue": "X"},
        {"sym": "B", "px": None, "venue": None},
        {"sym": "C", "px": None, "venue": None},
    ]
    assert [e.reason for e in out.errors] == ["type_mismatch"]


def test_a_json_key_fills_the_index_and_its_tombstones_remove_by_it():
    table = decoder(
        schema={"px": "float", "id": "integer"},
        key={"format": "json", "fields": {"id": "account.id"}},
        index="id",
    )
    keys = [json.dumps({"account": {"id": i}}).encode() for i in (1, 2, 1)]
    out = table.decode(batch([b'{"px": 1}', b'{"px": 2}', None], keys=keys))
    assert out.rows.to_pylist() == [{"px": 2.0, "id": 2}]
    assert out.removals.to_pylist() == [1]
    bad = table.decode(batch([b'{"px": 1}'], keys=[b"not json"]))
    assert bad.rows is None and [e.reason for e in bad.errors] == ["bad_key"]


def test_header_and_metadata_columns():
    out = decoder(
        schema={"px": "float", "seq": "integer"},
        headers={"src": "source", "seq": "seq"},
        metadata={"partition": "p", "offset": "o", "timestamp": "at", "topic": "from"},
    ).decode(
        batch(
            [b'{"px": 1}', b'{"px": 2}'],
            headers=[[("source", b"a"), ("seq", b"7"), ("source", b"b")], None],
        )
    )
    rows = out.rows.to_pylist()
    assert [(r["src"], r["seq"], r["p"], r["o"], r["from"]) for r in rows] == [
        ("b", 7, 0, 10, "t"),
        (None, None, 1, 11, "t"),
    ]
    assert ms(rows[1]["at"]) == T0 + 1


# -- CSV and Arrow --------------------------------------------------------------------


def test_csv_with_header_lines_matches_fields_by_name():
    out = decoder(
        format="csv",
        format_options={"header": True, "delimiter": "|"},
        schema={"sym": "string", "px": "float", "ok": "boolean"},
        fields={"px": "price"},
    ).decode(
        batch(
            [
                b"price|sym|ok\n1.5|A|true",
                b"sym|price\nB|2",
                b'sym|price\n"C|quoted"|3',
                b"no header",
                b"sym|price\nD|oops",
            ]
        )
    )
    assert out.rows.to_pylist() == [
        {"sym": "A", "px": 1.5, "ok": True},
        {"sym": "B", "px": 2.0, "ok": None},
        {"sym": "C|quoted", "px": 3.0, "ok": None},
    ]
    assert sorted(e.reason for e in out.errors) == ["invalid_csv", "type_mismatch"]


def test_csv_configured_columns_and_an_indexed_fold():
    out = decoder(
        format="csv",
        format_options={"columns": ["sym", "skip", "px"]},
        schema={"sym": "string", "px": "float"},
        index="sym",
    ).decode(batch([b"A,x,1", b"B,x,2", b"A,x,3", None], keys=[b"A", b"B", b"A", b"B"]))
    assert out.rows.to_pylist() == [{"sym": "A", "px": 3.0}]
    assert out.removals.to_pylist() == ["B"]


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_arrow_streams_with_several_rows_fold_in_order():
    out = decoder(
        format="arrow",
        schema={"sym": "string", "px": "float", "n": "integer"},
        fields={"n": "meta.n"},
        index="sym",
    ).decode(
        batch(
            [
                ipc(pa.table({"sym": ["A", "B", "A"], "px": [1, 2, 3]})),
                ipc(pa.table({"sym": ["C"], "meta": [{"n": 5}]})),
                b"not arrow",
            ]
        )
    )
    assert out.rows.to_pylist() == [
        {"sym": "B", "px": 2.0, "n": None},
        {"sym": "A", "px": 3.0, "n": None},
        {"sym": "C", "px": None, "n": 5},
    ]
    assert [e.reason for e in out.errors] == ["invalid_arrow"]


# -- plain Avro and Protobuf ----------------------------------------------------------

AVRO = {
    "type": "record",
    "name": "Trade",
    "fields": [
        {"name": "id", "type": "string"},
        {
            "name": "px",
            "type": {
                "type": "record",
                "name": "Px",
                "fields": [
                    {"name": "last", "type": ["null", "double"]},
                ],
            },
        },
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "side", "type": {"type": "enum", "name": "Side", "symbols": ["BUY", "SELL"]}},
    ],
}


def avro_bytes(record: dict, schema=AVRO) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def test_plain_avro_from_a_schema_file_with_derived_columns(tmp_path):
    path = tmp_path / "trade.avsc"
    path.write_text(json.dumps(AVRO))
    config = parse_config(
        {
            "tables": {
                "t": {"topic": "t", "format": "avro", "format_options": {"schema_file": str(path)}}
            }
        }
    )
    config, notes = resolve_config(config)
    table = config.tables["t"]
    assert notes == []
    assert table.schema_ == {
        "id": "string",
        "px_last": "float",
        "ts": "datetime",
        "day": "date",
        "side": "string",
    }
    record = {"id": "a", "px": {"last": 2.5}, "ts": (T0 + 1) * 1000, "day": 19675, "side": "SELL"}
    out = BatchDecoder(decode_spec(table)).decode(
        batch([avro_bytes(record), avro_bytes({**record, "px": {"last": None}}) + b"\x00", b""])
    )
    row = out.rows.to_pylist()[0]
    assert (row["id"], row["px_last"], ms(row["ts"]), str(row["day"]), row["side"]) == (
        "a",
        2.5,
        T0 + 1,
        "2023-11-14",
        "SELL",
    )
    assert [e.reason for e in out.errors] == ["invalid_avro", "invalid_avro"]


def test_an_avro_field_no_column_can_hold_is_a_start_up_error_naming_table_and_field():
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "tags", "type": {"type": "array", "items": "string"}}],
    }
    config = parse_config(
        {
            "tables": {
                "trades": {"topic": "t", "format": "avro", "format_options": {"schema": schema}}
            }
        }
    )
    with pytest.raises(ConfigError) as error:
        resolve_config(config)
    assert (
        "tables.trades.schema: cannot derive the columns: field 'tags' has Avro type 'array'"
        in str(error.value)
    )


def test_plain_protobuf_with_a_descriptor_set(tmp_path):
    from google.protobuf import descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="q.proto", package="q", syntax="proto3")
    message = file.message_type.add(name="Quote")
    message.field.add(name="sym", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    message.field.add(name="bid", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    message.field.add(name="raw", number=3, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    path = tmp_path / "q.desc"
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=[file]).SerializeToString())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    Quote = message_factory.GetMessageClass(pool.FindMessageTypeByName("q.Quote"))
    options = {"descriptor_file": str(path), "message": "q.Quote"}
    out = decoder(
        format="protobuf", format_options=options, schema={"sym": "string", "bid": "float"}
    ).decode(batch([Quote(sym="A", bid=1.5).SerializeToString(), b"\xff\xff\xff"]))
    assert out.rows.to_pylist() == [{"sym": "A", "bid": 1.5}]
    assert [e.reason for e in out.errors] == ["invalid_protobuf"]
    config = parse_config(
        {"tables": {"q": {"topic": "t", "format": "protobuf", "format_options": options}}}
    )
    with pytest.raises(ConfigError, match=r"tables.q.schema: .*field 'raw' is bytes"):
        resolve_config(config)


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"format": "json", "format_options": {"delimiter": ";"}},
            "tables.t: format_options.delimiter applies to csv only, not json",
        ),
        (
            {"format": "csv", "format_options": {"delimiter": ";;"}},
            "tables.t.format_options.delimiter",
        ),
        ({"format": "xml"}, "tables.t.format: Value error, unknown format"),
        ({"key": {"format": "string"}}, "give the key a column, or fields"),
        ({"key": {"format": "yaml", "column": "k"}}, "tables.t.key.format"),
        ({"metadata": {"offset": "px"}, "fields": {"px": "a.b"}}, "'px' is filled from both"),
        ({"fields": {"zz": "a"}}, "fields.zz: not a column of the schema"),
        ({"fields": {"px": "a..b"}}, "fields.px: 'a..b' is not a path"),
        (
            {"schema": {"q": "float", "px": "float"}, "fields": {"px": "q.last"}},
            "fields.px: 'q.last' runs through 'q', the value of column 'q'",
        ),
        ({"metadata": {"offsett": "o"}}, "tables.t.metadata.offsett: unknown key"),
        ({"format": "avro"}, "tables.t.format: avro without a schema in format_options"),
    ],
)
def test_format_configuration_errors_name_their_key_paths(table, message):
    table = {"topic": "t", "schema": {"px": "float"}, **table}
    with pytest.raises(ConfigError) as error:
        parse_config({"tables": {"t": table}})
    assert any(message.replace("Value error, ", "") in line for line in error.value.errors), (
        error.value.errors
    )


def test_key_header_and_metadata_columns_join_the_schema_with_default_types():
    table = TableConfig(
        topic="t",
        schema={"px": "float", "seq": "integer"},
        key={"column": "k"},
        headers={"seq": "seq", "src": "source"},
        metadata={"offset": "o", "timestamp": "at"},
    )
    assert table.schema_ == {
        "px": "float",
        "seq": "integer",
        "k": "string",
        "src": "string",
        "o": "integer",
        "at": "datetime",
    }


WIDE = {
    "type": "record",
    "name": "Wide",
    "fields": [
        {"name": "l", "type": "long"},
        {"name": "i", "type": ["null", "int"]},
        {"name": "f", "type": "float"},
        {"name": "d", "type": ["double", "null"]},
        {"name": "b", "type": "boolean"},
        {"name": "s", "type": ["null", "string"]},
        {"name": "skip", "type": "bytes"},
        {"name": "fx", "type": {"type": "fixed", "name": "F3", "size": 3}},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {
            "name": "n",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "N",
                    "fields": [
                        {"name": "x", "type": "long"},
                        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                    ],
                },
            ],
        },
    ],
}
WIDE_COLUMNS = {
    "l": "integer",
    "i": "integer",
    "f": "float",
    "d": "float",
    "b": "boolean",
    "s": "string",
    "e": "string",
    "x": "integer",
    "t": "datetime",
    "gone": "string",
}


def test_columnar_avro_decoding_matches_record_by_record_decoding():
    import random

    rng = random.Random(5)
    records = []
    for k in range(3000):
        records.append(
            {
                "l": rng.randint(-(2**62), 2**62),
                "i": rng.choice([None, rng.randint(-(2**31), 2**31 - 1)]),
                "f": rng.uniform(-1e6, 1e6),
                "d": rng.choice([None, rng.uniform(-1e300, 1e300)]),
                "b": rng.random() < 0.5,
                "s": rng.choice([None, "", "é€𝄞" * rng.randint(0, 5), "x" * rng.randint(0, 300)]),
                "skip": bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 20))),
                "fx": b"abc",
                "e": rng.choice("ABC"),
                "n": rng.choice([None, {"x": k, "t": T0 + k}]),
            }
        )
    values = [avro_bytes(r, WIDE) for r in records]
    # Broken records: truncated, with a trailing byte, empty.
    values[10] = values[10][:-1]
    values[20] = values[20] + b"\x00"
    values[30] = b""
    table = decoder(
        format="avro",
        format_options={"schema": WIDE},
        schema=WIDE_COLUMNS,
        fields={"x": "n.x", "t": "n.t"},
    )
    from connectors.decoders.avro import AvroDecoder

    assert isinstance(table.values, AvroDecoder)
    assert table.values._plain.columnar is not None
    out = table.decode(batch(values))
    assert sorted(e.offset - 10 for e in out.errors) == [10, 20, 30]
    assert {e.reason for e in out.errors} == {"invalid_avro"}
    # The same batch record by record, through fastavro.
    table.values._plain.columnar = None
    slow = table.decode(batch(values))
    assert slow.rows.to_pylist() == out.rows.to_pylist()
    assert sorted(e.offset for e in slow.errors) == sorted(e.offset for e in out.errors)
    rows = out.rows.to_pylist()
    good = [r for k, r in enumerate(records) if k not in (10, 20, 30)]
    assert [r["s"] for r in rows] == [g["s"] for g in good]
    assert [r["l"] for r in rows] == [g["l"] for g in good]
    assert [r["x"] for r in rows] == [g["n"]["x"] if g["n"] else None for g in good]
    assert all(r["gone"] is None for r in rows)


def test_columnar_avro_drops_records_with_invalid_utf8_alone():
    schema = {"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]}
    values = [avro_bytes({"s": "ok"}, schema), b"\x04\xff\xfe", avro_bytes({"s": "fine"}, schema)]
    out = decoder(format="avro", format_options={"schema": schema}, schema={"s": "string"}).decode(
        batch(values)
    )
    assert out.rows.column("s").to_pylist() == ["ok", "fine"]
    assert [e.reason for e in out.errors] == ["invalid_utf8"]


def test_an_avro_key_fills_the_index_and_its_tombstones_remove_by_it():
    key_options = {"schema": '"long"'}
    table = decoder(
        format="csv",
        schema={"px": "float", "id": "integer"},
        key={"format": "avro", "column": "id", "format_options": key_options},
        index="id",
    )
    keys = [avro_bytes(k, "long") for k in (7, 8, 7, 8)]
    out = table.decode(batch([b"1", b"2", None, b"3"], keys=keys))
    assert out.rows.to_pylist() == [{"px": 3.0, "id": 8}]
    assert out.removals.to_pylist() == [7]


def test_registry_settings_become_client_settings():
    from connectors.registry import client_config

    config = parse_config(
        {
            "kafka": {
                "schema_registry": {
                    "url": "https://registry:8081/",
                    "basic_auth": {"user": "svc", "password": "s3:cret"},
                    "tls": {"ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"},
                }
            },
            "tables": {"t": {"topic": "t", "format": "avro"}},
        }
    )
    settings = client_config(config.kafka.schema_registry.settings())
    assert settings["url"] == "https://registry:8081"
    assert settings["basic.auth.user.info"] == "svc:s3:cret"
    assert (
        settings["ssl.ca.location"],
        settings["ssl.certificate.location"],
        settings["ssl.key.location"],
    ) == ("/ca.pem", "/c.pem", "/k.pem")
    with pytest.raises(ConfigError, match="give both cert and key"):
        parse_config(
            {
                "kafka": {"schema_registry": {"url": "http://r", "tls": {"cert": "/c.pem"}}},
                "tables": {"t": {"topic": "t", "format": "avro"}},
            }
        )


def _wide_protobuf(tmp_path):
    from google.protobuf import descriptor_pool, message_factory, timestamp_pb2, wrappers_pb2

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="w.proto", package="w", syntax="proto3")
    file.dependency.extend(["google/protobuf/timestamp.proto", "google/protobuf/wrappers.proto"])
    side = file.enum_type.add(name="Side")
    for number, name in enumerate(["BUY", "SELL", "HOLD"]):
        side.value.add(name=name, number=number)
    inner = file.message_type.add(name="Inner")
    inner.field.add(name="x", number=1, type=F.TYPE_SINT64, label=F.LABEL_OPTIONAL)
    inner.field.add(name="label", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    wide = file.message_type.add(name="Wide")
    scalars = [
        ("i32", F.TYPE_INT32),
        ("i64", F.TYPE_INT64),
        ("u32", F.TYPE_UINT32),
        ("f32", F.TYPE_FLOAT),
        ("f64", F.TYPE_DOUBLE),
        ("ok", F.TYPE_BOOL),
        ("s", F.TYPE_STRING),
        ("fx", F.TYPE_SFIXED64),
        ("blob", F.TYPE_BYTES),
    ]
    for number, (name, kind) in enumerate(scalars, start=1):
        wide.field.add(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)
    wide.field.add(
        name="side", number=20, type=F.TYPE_ENUM, type_name=".w.Side", label=F.LABEL_OPTIONAL
    )
    wide.field.add(
        name="inner", number=21, type=F.TYPE_MESSAGE, type_name=".w.Inner", label=F.LABEL_OPTIONAL
    )
    wide.field.add(
        name="ts",
        number=22,
        type=F.TYPE_MESSAGE,
        type_name=".google.protobuf.Timestamp",
        label=F.LABEL_OPTIONAL,
    )
    wide.field.add(
        name="px",
        number=23,
        type=F.TYPE_MESSAGE,
        type_name=".google.protobuf.DoubleValue",
        label=F.LABEL_OPTIONAL,
    )
    wide.field.add(
        name="opt",
        number=24,
        type=F.TYPE_INT64,
        label=F.LABEL_OPTIONAL,
        proto3_optional=True,
        oneof_index=0,
    )
    wide.oneof_decl.add(name="_opt")
    wide.field.add(name="tags", number=25, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    path = tmp_path / "w.desc"
    files = [descriptor_pb2.FileDescriptorProto() for _ in range(2)]
    timestamp_pb2.DESCRIPTOR.CopyToProto(files[0])
    wrappers_pb2.DESCRIPTOR.CopyToProto(files[1])
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=[*files, file]).SerializeToString())
    pool = descriptor_pool.DescriptorPool()
    for proto in (*files, file):
        pool.Add(proto)
    return path, message_factory.GetMessageClass(pool.FindMessageTypeByName("w.Wide"))


def test_columnar_protobuf_decoding_matches_the_runtime(tmp_path):
    import random

    path, Wide = _wide_protobuf(tmp_path)
    rng = random.Random(11)
    values = []
    for k in range(3000):
        message = Wide(
            i32=rng.randint(-(2**31), 2**31 - 1),
            i64=rng.randint(-(2**63), 2**63 - 1),
            u32=rng.randint(0, 2**32 - 1),
            f32=rng.choice([0.0, 1.5, -2.25]),
            f64=rng.uniform(-1e300, 1e300),
            ok=rng.random() < 0.5,
            s=rng.choice(["", "é€𝄞" * rng.randint(0, 4), "x" * rng.randint(0, 200)]),
            fx=rng.randint(-(2**63), 2**63 - 1),
            blob=bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 9))),
            side=rng.choice([0, 1, 2]),
            tags=["a"] * rng.randint(0, 3),
        )
        if rng.random() < 0.7:
            message.inner.x = rng.randint(-(2**40), 2**40)
            if rng.random() < 0.5:
                message.inner.label = "in"
        if rng.random() < 0.7:
            message.ts.FromMilliseconds(T0 + rng.randint(-(10**12), 10**12))
        if rng.random() < 0.5:
            message.px.value = rng.uniform(-5, 5)
        if rng.random() < 0.5:
            message.opt = rng.randint(-5, 5)
        encoded = message.SerializeToString()
        if k % 500 == 7:
            encoded += b"\x08"  # a truncated trailing field
        if k % 700 == 9:
            encoded += b"\xa8\x1f\x05"  # an unknown field, kept aside by the runtime
        values.append(encoded)
    schema = {
        "i32": "integer",
        "i64": "integer",
        "u32": "integer",
        "f32": "float",
        "f64": "float",
        "ok": "boolean",
        "s": "string",
        "fx": "integer",
        "side": "string",
        "x": "integer",
        "label": "string",
        "ts": "datetime",
        "px": "float",
        "opt": "integer",
        "gone": "string",
    }
    table = decoder(
        format="protobuf",
        format_options={"descriptor_file": str(path), "message": "w.Wide"},
        schema=schema,
        fields={"x": "inner.x", "label": "inner.label"},
    )
    assert table.values._plain.columnar is not None
    fast = table.decode(batch(values))
    table.values._plain.columnar = None
    slow = table.decode(batch(values))
    assert sorted(e.offset for e in fast.errors) == sorted(e.offset for e in slow.errors)
    assert len(fast.errors) == 6
    assert fast.rows.to_pylist() == slow.rows.to_pylist()
