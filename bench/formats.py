"""Decode throughput per format: the benchmark's small records as JSON, Avro, Protobuf, CSV.

No broker: the same records (5 fields, ~55 bytes as JSON) are encoded in each
format, then decoded by the table's batch decoder in 10k-record batches, as
the ingest path does. Prints records/s per format (median of a few runs).

    python -m bench.formats [--records 100000] [--batch 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import fastavro
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from bench.records import SCHEMA, SYMBOLS, raw_batch, value
from connectors.decoding import BatchDecoder
from service.config import TableConfig, decode_spec

AVRO_SCHEMA = {
    "type": "record",
    "name": "Record",
    "fields": [
        {"name": "i", "type": "long"},
        {"name": "s", "type": "string"},
        {"name": "p", "type": "double"},
        {"name": "q", "type": "long"},
        {"name": "b", "type": "boolean"},
    ],
}


def _fields(i: int) -> dict:
    return {
        "i": i,
        "s": SYMBOLS[i % len(SYMBOLS)],
        "p": round(100 + (i * 7919 % 10000) / 100, 2),
        "q": (i * 31) % 1000,
        "b": bool(i % 2),
    }


def _protobuf(directory: Path):
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="bench.proto", package="bench", syntax="proto3")
    message = file.message_type.add(name="Record")
    kinds = {"i": F.TYPE_INT64, "s": F.TYPE_STRING, "p": F.TYPE_DOUBLE}
    kinds.update({"q": F.TYPE_INT64, "b": F.TYPE_BOOL})
    for number, (name, kind) in enumerate(kinds.items(), start=1):
        message.field.add(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)
    path = directory / "bench.desc"
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=[file]).SerializeToString())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return path, message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Record"))


def encoded(count: int, directory: Path) -> dict[str, tuple[dict, list[bytes]]]:
    """format -> (table config, values)"""
    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    descriptor, record = _protobuf(directory)
    out: dict[str, tuple[dict, list[bytes]]] = {}
    out["json"] = ({"format": "json"}, [value(i) for i in range(count)])
    avro_values = []
    for i in range(count):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, _fields(i))
        avro_values.append(buffer.getvalue())
    out["avro"] = ({"format": "avro", "format_options": {"schema": AVRO_SCHEMA}}, avro_values)
    out["protobuf"] = (
        {
            "format": "protobuf",
            "format_options": {"descriptor_file": str(descriptor), "message": "bench.Record"},
        },
        [record(**_fields(i)).SerializeToString() for i in range(count)],
    )
    out["csv"] = (
        {"format": "csv"},
        [
            "{i},{s},{p},{q},{b}".format(**{**f, "b": str(f["b"]).lower()}).encode()
            for f in map(_fields, range(count))
        ],
    )
    return out


def measure(records: int = 100_000, batch: int = 10_000, repeat: int = 3) -> list[dict]:
    """One row per format: bytes per record and decoded records per second."""
    results = []
    with tempfile.TemporaryDirectory(prefix="livetables-bench-") as work:
        for name, (table, values) in encoded(records, Path(work)).items():
            decoder = BatchDecoder(decode_spec(TableConfig(topic="bench", schema=SCHEMA, **table)))
            batches = [
                raw_batch("bench", values[start : start + batch], start)
                for start in range(0, len(values), batch)
            ]
            rates = []
            for _ in range(repeat):
                started = time.perf_counter()
                rows = 0
                for raw in batches:
                    decoded = decoder.decode(raw)
                    assert not decoded.errors, decoded.errors[:3]
                    rows += decoded.row_count
                rates.append(rows / (time.perf_counter() - started))
            assert rows == len(values)
            results.append(
                {
                    "format": name,
                    "bytes_per_record": sum(map(len, values)) / len(values),
                    "records_per_s": statistics.median(rates),
                }
            )
    return results


def table(results: list[dict]) -> str:
    json_rate = next((r["records_per_s"] for r in results if r["format"] == "json"), None)
    lines = [
        "| format | bytes/record | decoded records/s | vs JSON |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in results:
        ratio = f"{r['records_per_s'] / json_rate:.2f}x" if json_rate else ""
        lines.append(
            f"| {r['format']} | {r['bytes_per_record']:.0f} | {r['records_per_s']:,.0f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(table(measure(args.records, args.batch, args.repeat)))


if __name__ == "__main__":
    main()
