"""Record formats against the real broker and a real schema registry (Apicurio, on loopback).

Avro and Protobuf records are produced with confluent-kafka's own serializers,
which register their schemas in the registry; the service reads them back
through the registry's Confluent-compatible API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from tests.helpers import produce, wait_until

pytestmark = pytest.mark.kafka

QUOTE_V1 = {
    "type": "record",
    "name": "Quote",
    "namespace": "desk",
    "fields": [
        {"name": "sym", "type": "string"},
        {"name": "bid", "type": "double"},
        {"name": "qty", "type": "int"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "venue",
            "type": {
                "type": "record",
                "name": "Venue",
                "fields": [{"name": "mic", "type": "string"}],
            },
        },
    ],
}
# A compatible change: qty promoted to long, a field added with a default.
QUOTE_V2 = {
    **QUOTE_V1,
    "fields": [
        *[f for f in QUOTE_V1["fields"] if f["name"] != "qty"],
        {"name": "qty", "type": "long"},
        {"name": "side", "type": ["null", "string"], "default": None},
    ],
}
T0 = 1_700_000_000_000


def _config(kafka, registry, tables: dict) -> dict:
    return {
        "kafka": {"bootstrap_servers": kafka.bootstrap, "schema_registry": {"url": registry.url}},
        "tables": tables,
    }


def _serialize(serializer, topic: str, record) -> bytes:
    return serializer(record, SerializationContext(topic, MessageField.VALUE))


def _rows(service, table: str, key: str) -> dict:
    columns = service.columns(table)
    names = [c for c in columns if c != "__INDEX__"]
    return {columns[key][i]: {c: columns[c][i] for c in names} for i in range(len(columns[key]))}


def _schema(service, table: str) -> dict:
    return service.service.host.tables[table].schema()


def test_avro_through_the_registry_survives_a_schema_change(
    kafka, schema_registry, topic_name, run_service
):
    kafka.create_topic(topic_name, partitions=2)
    client = SchemaRegistryClient({"url": schema_registry.url})
    v1 = AvroSerializer(client, json.dumps(QUOTE_V1))
    records = [
        (i % 2, f"S{i}".encode(), _serialize(v1, topic_name, _quote(i, version=1)))
        for i in range(200)
    ]
    produce(kafka.bootstrap, topic_name, records)
    service = run_service(
        _config(
            kafka,
            schema_registry,
            {
                # Columns derived from the registry's schema; upserts on sym.
                "derived": {"topic": topic_name, "format": "avro", "index": "sym"},
                # Columns named here, one of them only in the newer schema.
                "named": {
                    "topic": topic_name,
                    "format": "avro",
                    "schema": {
                        "sym": "string",
                        "qty": "integer",
                        "side": "string",
                        "mic": "string",
                        "ts": "datetime",
                    },
                    "fields": {"mic": "venue.mic"},
                    "index": "sym",
                },
            },
        )
    )
    wait_until(service.ready, what="catch-up")
    assert _schema(service, "derived") == {
        "sym": "string",
        "bid": "float",
        "qty": "integer",
        "ts": "datetime",
        "venue_mic": "string",
    }
    # Mid-stream: a newer, compatible schema; an update, a delete and a bad schema id.
    v2 = AvroSerializer(client, json.dumps(QUOTE_V2))
    unknown_id = b"\x00" + (987654).to_bytes(4, "big") + b"\x02\x41"
    produce(
        kafka.bootstrap,
        topic_name,
        [
            (0, b"S0", _serialize(v2, topic_name, {**_quote(0, version=2), "qty": 2_000_000_000})),
            (1, b"S1", None),
            (0, b"S2", unknown_id),
            (1, b"S3", _serialize(v2, topic_name, _quote(3, version=2))),
        ],
    )
    wait_until(
        lambda: (
            service.metric(
                "livetables_decode_errors_total", table="derived", reason="unknown_schema"
            )
            == 1
        ),
        what="the unknown schema id counted",
    )
    wait_until(lambda: service.size("derived") == 199, what="the delete applied")
    wait_until(
        lambda: _rows(service, "derived", "sym")["S0"]["qty"] == 2_000_000_000, what="the v2 update"
    )
    wait_until(lambda: _rows(service, "named", "sym")["S3"]["side"], what="the v2 update")
    derived = _rows(service, "derived", "sym")
    assert derived["S5"] == {
        "sym": "S5",
        "bid": 5.5,
        "qty": 5,
        "ts": T0 + 5,
        "venue_mic": "XNAS",
    }
    assert "S1" not in derived
    named = _rows(service, "named", "sym")
    assert named["S3"]["side"] == "buy" and named["S4"]["side"] is None
    assert named["S4"]["mic"] == "XNAS" and named["S4"]["ts"] == T0 + 4
    assert (
        service.metric("livetables_decode_errors_total", table="named", reason="unknown_schema")
        == 1
    )


def test_avro_records_of_an_older_schema_take_reader_aliases_and_defaults(
    kafka, schema_registry, topic_name, run_service
):
    """The table reads with the subject's latest schema: a rename and a new default apply."""
    kafka.create_topic(topic_name)
    client = SchemaRegistryClient({"url": schema_registry.url})
    v1 = AvroSerializer(client, json.dumps(QUOTE_V1))
    produce(
        kafka.bootstrap,
        topic_name,
        [(0, None, _serialize(v1, topic_name, _quote(i, version=1))) for i in range(3)],
    )
    renamed = {
        **QUOTE_V1,
        "fields": [
            {"name": "bid_px", "type": "double", "aliases": ["bid"]} if f["name"] == "bid" else f
            for f in QUOTE_V1["fields"]
        ]
        + [{"name": "side", "type": "string", "default": "n/a"}],
    }
    client.register_schema(f"{topic_name}-value", Schema(json.dumps(renamed), "AVRO"))
    service = run_service(
        _config(kafka, schema_registry, {"t": {"topic": topic_name, "format": "avro"}})
    )
    wait_until(lambda: service.size("t") == 3, what="three rows")
    rows = _rows(service, "t", "sym")
    assert (rows["S2"]["bid_px"], rows["S2"]["side"], rows["S2"]["qty"]) == (2.5, "n/a", 2)


def _quote(i: int, version: int) -> dict:
    record = {
        "sym": f"S{i}",
        "bid": i + 0.5,
        "qty": i,
        "ts": datetime.fromtimestamp((T0 + i) / 1000, tz=UTC),
        "venue": {"mic": "XNAS"},
    }
    if version == 2:
        record["side"] = "buy"
    return record


def _protobuf_classes(version: int):
    """Message classes built at run time, as generated code would define them."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name=f"desk_v{version}.proto", package="desk", syntax="proto3"
    )
    file.dependency.append("google/protobuf/timestamp.proto")
    heartbeat = file.message_type.add(name="Heartbeat")
    heartbeat.field.add(name="n", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    quote = file.message_type.add(name="Quote")
    quote.field.add(name="sym", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    quote.field.add(name="bid", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    quote.field.add(
        name="ts",
        number=3,
        type=F.TYPE_MESSAGE,
        type_name=".google.protobuf.Timestamp",
        label=F.LABEL_OPTIONAL,
    )
    side = file.enum_type.add(name="Side")
    side.value.add(name="BUY", number=0)
    side.value.add(name="SELL", number=1)
    quote.field.add(
        name="side", number=4, type=F.TYPE_ENUM, type_name=".desk.Side", label=F.LABEL_OPTIONAL
    )
    if version == 2:
        quote.field.add(name="venue", number=5, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    timestamp = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(timestamp)
    pool.Add(timestamp)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("desk.Quote"))


def test_protobuf_through_the_registry_survives_a_schema_change(
    kafka, schema_registry, topic_name, run_service
):
    kafka.create_topic(topic_name)
    client = SchemaRegistryClient({"url": schema_registry.url})
    options = {"use.deprecated.format": False}
    quote_v1 = _protobuf_classes(1)
    v1 = ProtobufSerializer(quote_v1, client, options)

    def quote(cls, i: int, **extra):
        message = cls(sym=f"S{i}", bid=i + 0.25, side=i % 2, **extra)
        message.ts.FromMilliseconds(T0 + i)
        return message

    # Quote is the second message of its file: the framing carries message index [1].
    produce(
        kafka.bootstrap,
        topic_name,
        [(0, f"S{i}".encode(), _serialize(v1, topic_name, quote(quote_v1, i))) for i in range(100)],
    )
    service = run_service(
        _config(
            kafka,
            schema_registry,
            {
                "derived": {
                    "topic": topic_name,
                    "format": "protobuf",
                    "format_options": {"message": "desk.Quote"},
                    "index": "sym",
                },
                "named": {
                    "topic": topic_name,
                    "format": "protobuf",
                    "schema": {"sym": "string", "venue": "string", "ts": "datetime"},
                    "key": {"column": "k"},
                },
            },
        )
    )
    wait_until(service.ready, what="catch-up")
    assert _schema(service, "derived") == {
        "sym": "string",
        "bid": "float",
        "ts": "datetime",
        "side": "string",
    }
    quote_v2 = _protobuf_classes(2)
    v2 = ProtobufSerializer(quote_v2, client, options)
    unknown_id = b"\x00" + (987654).to_bytes(4, "big") + b"\x00\x0a\x01A"
    produce(
        kafka.bootstrap,
        topic_name,
        [
            (0, b"S7", _serialize(v2, topic_name, quote(quote_v2, 7, venue="XLON"))),
            (0, b"S8", None),
            (0, b"S9", unknown_id),
        ],
    )
    wait_until(
        lambda: (
            service.metric(
                "livetables_decode_errors_total", table="derived", reason="unknown_schema"
            )
            == 1
        ),
        what="the unknown schema id counted",
    )
    wait_until(lambda: service.size("derived") == 99, what="the delete applied")
    wait_until(lambda: service.size("named") == 101, what="the new record appended")
    wait_until(lambda: _rows(service, "derived", "sym")["S7"]["side"] == "SELL", what="v2 update")
    derived = _rows(service, "derived", "sym")
    assert derived["S3"] == {"sym": "S3", "bid": 3.25, "ts": T0 + 3, "side": "SELL"}
    assert derived["S7"]["side"] == "SELL" and "S8" not in derived
    named = service.columns("named")
    assert named["venue"].count("XLON") == 1 and named["venue"].count(None) == 100
    assert named["k"][-1] == "S7"
    assert (
        service.metric(
            "livetables_decode_errors_total", table="named", reason="unexpected_tombstone"
        )
        == 1
    )


def test_protobuf_schema_registered_as_proto_source(
    kafka, schema_registry, topic_name, run_service
):
    """Registries fed by other clients serve .proto source; it is compiled at start-up."""
    kafka.create_topic(topic_name)
    source = (
        'syntax = "proto3";\npackage src;\n'
        "message Trade { string id = 1; Px px = 2; optional int64 qty = 3; }\n"
        "message Px { double last = 1; }\n"
    )
    request = urllib.request.Request(
        f"{schema_registry.url}/subjects/{topic_name}-value/versions",
        data=json.dumps({"schema": source, "schemaType": "PROTOBUF"}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        schema_id = json.loads(response.read())["id"]
    # The same messages, built locally to produce payloads.
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="t.proto", package="src", syntax="proto3")
    px = file.message_type.add(name="Px")
    px.field.add(name="last", number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    trade = file.message_type.add(name="Trade")
    trade.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    trade.field.add(
        name="px", number=2, type=F.TYPE_MESSAGE, type_name=".src.Px", label=F.LABEL_OPTIONAL
    )
    trade.field.add(
        name="qty",
        number=3,
        type=F.TYPE_INT64,
        label=F.LABEL_OPTIONAL,
        proto3_optional=True,
        oneof_index=0,
    )
    trade.oneof_decl.add(name="_qty")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    Trade = message_factory.GetMessageClass(pool.FindMessageTypeByName("src.Trade"))
    frame = b"\x00" + schema_id.to_bytes(4, "big") + b"\x00"
    produce(
        kafka.bootstrap,
        topic_name,
        [
            (0, None, frame + Trade(id="a", px={"last": 1.5}, qty=3).SerializeToString()),
            (0, None, frame + Trade(id="b").SerializeToString()),
        ],
    )
    service = run_service(
        _config(
            kafka,
            schema_registry,
            {"t": {"topic": topic_name, "format": "protobuf", "fields": {"px": "px.last"}}},
        )
    )
    wait_until(lambda: service.size("t") == 2, what="two rows")
    assert _schema(service, "t") == {
        "id": "string",
        "px_last": "float",
        "qty": "integer",
        "px": "float",
    }
    rows = _rows(service, "t", "id")
    assert rows["a"] == {"id": "a", "px_last": 1.5, "qty": 3, "px": 1.5}
    assert rows["b"] == {"id": "b", "px_last": None, "qty": None, "px": None}


def _check(config) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_shows_columns_derived_from_the_registry(
    kafka, schema_registry, topic_name, tmp_path
):
    client = SchemaRegistryClient({"url": schema_registry.url})
    _serialize(AvroSerializer(client, json.dumps(QUOTE_V1)), topic_name, _quote(1, version=1))
    config = tmp_path / "livetables.yaml"
    config.write_text(
        json.dumps(
            _config(
                kafka,
                schema_registry,
                {
                    "q": {"topic": topic_name, "format": "avro", "metadata": {"offset": "off"}},
                    "broken": {"topic": "nowhere", "format": "avro"},
                },
            )
        )
    )
    result = _check(config)
    assert result.returncode == 2, result
    err = result.stderr
    assert "tables.broken.schema: cannot derive the columns" in err and "nowhere-value" in err
    config.write_text(
        json.dumps(
            _config(
                kafka,
                schema_registry,
                {"q": {"topic": topic_name, "format": "avro", "metadata": {"offset": "off"}}},
            )
        )
    )
    result = _check(config)
    assert result.returncode == 0, result
    out = result.stdout
    assert (
        "columns sym: string, bid: float, qty: integer, ts: datetime, venue_mic: string, "
        "off: integer"
    ) in out


def test_csv_arrow_and_nested_json_with_key_header_and_metadata_columns(
    kafka, topic_name, run_service
):
    topics = {kind: f"{topic_name}-{kind}" for kind in ("csv", "arrow", "json")}
    for topic in topics.values():
        kafka.create_topic(topic, partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    stamps = {  # every timestamp form a datetime column takes, with what it means
        "2023-11-14T22:13:20Z": T0,
        "2023-11-14T23:13:20.500+01:00": T0 + 500,
        "2023-11-14 22:13:21": T0 + 1000,
        "1700000002": T0 + 2000,
        "1700000003000": T0 + 3000,
        "1700000004000000": T0 + 4000,
    }
    for i, (stamp, _) in enumerate(stamps.items()):
        line = f"S{i};{i}.5;{stamp}".encode()
        producer.produce(
            topics["csv"],
            key=f"{i}".encode(),
            value=line,
            partition=i % 2,
            headers=[("source", b"feed-a"), ("seq", str(i).encode())],
        )
        batch = pa.table({"sym": [f"S{i}", f"T{i}"], "px": [{"last": i * 1.0}] * 2})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_table(batch)
        producer.produce(topics["arrow"], key=f"S{i}".encode(), value=sink.getvalue().to_pybytes())
        # JSON carries epoch times as numbers, ISO times as strings.
        when = int(stamp) if stamp.isdigit() else stamp
        document = {"sym": f"S{i}", "quote": {"px": {"last": i}, "ts": when}}
        producer.produce(
            topics["json"],
            key=json.dumps({"desk": "fx", "n": i}).encode(),
            value=json.dumps(document).encode(),
            timestamp=T0 + i,
        )
    producer.produce(topics["csv"], key=b"x", value=b"bad;line;with;extra;fields")
    producer.produce(topics["arrow"], key=b"S0", value=None)  # a tombstone on an indexed table
    assert producer.flush(30) == 0
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "csv": {
                    "topic": topics["csv"],
                    "format": "csv",
                    "format_options": {"delimiter": ";"},
                    "schema": {"sym": "string", "px": "float", "ts": "datetime", "seq": "integer"},
                    "key": {"column": "k"},
                    "headers": {"src": "source", "seq": "seq"},
                    "metadata": {"partition": "p", "offset": "o"},
                },
                "arrow": {
                    "topic": topics["arrow"],
                    "format": "arrow",
                    "schema": {"sym": "string", "px": "float"},
                    "fields": {"px": "px.last"},
                    "index": "sym",
                },
                "json": {
                    "topic": topics["json"],
                    "schema": {"sym": "string", "px": "integer", "ts": "datetime", "n": "integer"},
                    "fields": {"px": "quote.px.last", "ts": "quote.ts"},
                    "key": {"format": "json", "fields": {"desk": "desk", "n": "n"}},
                    "metadata": {"timestamp": "kafka_ts", "topic": "topic"},
                },
            },
        }
    )
    n = len(stamps)
    wait_until(service.ready, what="catch-up")
    wait_until(lambda: service.size("csv") == n and service.size("json") == n, what="rows")
    csv_rows = _rows(service, "csv", "sym")
    for i, expected in enumerate(stamps.values()):
        row = csv_rows[f"S{i}"]
        assert row["ts"] == expected, (i, row)
        assert (row["px"], row["k"], row["src"], row["seq"], row["p"]) == (
            i + 0.5,
            str(i),
            "feed-a",
            i,
            i % 2,
        )
    assert service.metric("livetables_decode_errors_total", table="csv", reason="invalid_csv") == 1
    assert _schema(service, "csv")["o"] == "integer"
    arrow_rows = _rows(service, "arrow", "sym")
    assert len(arrow_rows) == 2 * n - 1 and "S0" not in arrow_rows and arrow_rows["T0"]["px"] == 0.0
    json_rows = _rows(service, "json", "sym")
    for i, expected in enumerate(stamps.values()):
        row = json_rows[f"S{i}"]
        assert (row["px"], row["ts"], row["desk"], row["n"]) == (i, expected, "fx", i)
        assert row["kafka_ts"] == T0 + i and row["topic"] == topics["json"]
