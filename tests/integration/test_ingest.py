"""Kafka topics into tables, against the real broker: the promises the README makes."""

from __future__ import annotations

import random
import time

import pytest

from tests.helpers import json_bytes, produce, wait_until

SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}


def _config(kafka, tables: dict) -> dict:
    return {"kafka": {"bootstrap_servers": kafka.bootstrap}, "tables": tables}


def test_indexed_table_equals_the_fold_of_a_random_stream(kafka, topic_name, run_service):
    """Upserts, tombstones, re-creates over thousands of keys and 4 partitions."""
    kafka.create_topic(topic_name, partitions=4)
    rng = random.Random(7)
    keys = [f"k{i}" for i in range(3000)]
    expected: dict[str, dict] = {}
    records = []
    for seq in range(30000):
        key = rng.choice(keys)
        # Keys are partitioned by key, as a keyed producer would.
        partition = hash(key) % 4
        if key in expected and rng.random() < 0.25:
            records.append((partition, key.encode(), None))
            del expected[key]
        else:
            row = {"id": key, "sym": rng.choice("ABCDE"), "px": seq / 10, "qty": seq}
            records.append((partition, key.encode(), json_bytes(row)))
            expected[key] = row
    # Half before the service starts (catch-up), half while it runs (live).
    produce(kafka.bootstrap, topic_name, records[:15000])
    service = run_service(
        _config(kafka, {"t": {"topic": topic_name, "schema": SCHEMA, "index": "id"}})
    )
    wait_until(service.ready, what="catch-up")
    produce(kafka.bootstrap, topic_name, records[15000:])
    wait_until(
        lambda: service.metric("livetables_records_consumed_total", table="t") == len(records),
        what="every record consumed",
    )
    wait_until(lambda: service.size("t") == len(expected), what=f"{len(expected)} rows")
    columns = service.columns("t")
    got = {columns["id"][i]: {c: columns[c][i] for c in SCHEMA} for i in range(len(columns["id"]))}
    assert got == expected
    removed = service.metric("livetables_rows_applied_total", table="t", op="remove")
    assert removed > 0


def test_append_table_holds_every_record_exactly_once(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=3)
    total = 20000
    produce(
        kafka.bootstrap,
        topic_name,
        (
            (i % 3, None, json_bytes({"id": str(i), "sym": "S", "px": 1.0, "qty": i}))
            for i in range(total // 2)
        ),
    )
    service = run_service(_config(kafka, {"t": {"topic": topic_name, "schema": SCHEMA}}))
    wait_until(service.ready, what="catch-up")
    assert service.size("t") == total // 2, "ready before every backlog record was applied"
    produce(
        kafka.bootstrap,
        topic_name,
        (
            (i % 3, None, json_bytes({"id": str(i), "sym": "S", "px": 1.0, "qty": i}))
            for i in range(total // 2, total)
        ),
    )
    wait_until(lambda: service.size("t") >= total, what="all rows")
    ids = service.columns("t")["id"]
    assert len(ids) == total
    assert sorted(ids, key=int) == [str(i) for i in range(total)]


def test_limit_table_holds_exactly_limit_rows(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=1)
    produce(
        kafka.bootstrap,
        topic_name,
        (
            (0, None, json_bytes({"id": str(i), "sym": "S", "px": 1.0, "qty": i}))
            for i in range(12345)
        ),
    )
    service = run_service(
        _config(kafka, {"t": {"topic": topic_name, "schema": SCHEMA, "limit": 1000}})
    )
    wait_until(service.ready, what="catch-up")
    qty = service.columns("t")["qty"]
    assert len(qty) == 1000
    # A single partition is totally ordered: the window is the last 1000 records.
    assert sorted(qty) == list(range(12345 - 1000, 12345))


def test_malformed_records_are_counted_and_skipped_but_their_batch_applied(
    kafka, topic_name, run_service
):
    kafka.create_topic(topic_name, partitions=1)
    good = [json_bytes({"id": str(i), "sym": "S", "px": 1.5, "qty": i}) for i in range(300)]
    bad = {
        "invalid_json": [b"not json", b'{"id": "x",', b"\xff\xfe", b""],
        "not_object": [b"[1, 2]", b"42", b'"text"', b"null"],
        "type_mismatch": [b'{"id": "y", "qty": "many"}', b'{"id": "z", "px": [1]}'],
    }
    values = list(good)
    for i, value in enumerate(v for vs in bad.values() for v in vs):
        values.insert(20 + i * 25, value)
    produce(kafka.bootstrap, topic_name, ((0, None, v) for v in values))
    service = run_service(_config(kafka, {"t": {"topic": topic_name, "schema": SCHEMA}}))
    wait_until(service.ready, what="catch-up")
    assert service.size("t") == len(good)
    assert sorted(service.columns("t")["qty"]) == list(range(300))
    for reason, samples in bad.items():
        counted = service.metric("livetables_decode_errors_total", table="t", reason=reason)
        assert counted == len(samples), reason


@pytest.mark.parametrize(
    ("start", "expected"),
    [("earliest", {"old", "recent", "new"}), ("latest", {"new"}), ("-30m", {"recent", "new"})],
)
def test_start_policies_pick_the_right_records(kafka, topic_name, run_service, start, expected):
    kafka.create_topic(topic_name, partitions=2)
    now_ms = int(time.time() * 1000)

    def records(tag: str, n: int = 10):
        return (
            (i % 2, None, json_bytes({"id": f"{tag}-{i}", "sym": tag, "px": 0.0, "qty": i}))
            for i in range(n)
        )

    produce(kafka.bootstrap, topic_name, records("old"), timestamp_ms=now_ms - 2 * 3600 * 1000)
    produce(kafka.bootstrap, topic_name, records("recent"), timestamp_ms=now_ms - 5 * 60 * 1000)
    service = run_service(
        _config(kafka, {"t": {"topic": topic_name, "schema": SCHEMA, "start": start}})
    )
    wait_until(service.ready, what="catch-up")
    produce(kafka.bootstrap, topic_name, records("new"))
    wait_until(lambda: service.size("t") == 10 * len(expected), what="rows by start policy")
    assert set(service.columns("t")["sym"]) == expected


def test_several_tables_read_one_topic(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=2)
    produce(
        kafka.bootstrap,
        topic_name,
        (
            (i % 2, None, json_bytes({"id": f"i{i % 50}", "sym": "S", "px": 1.0, "qty": i}))
            for i in range(500)
        ),
    )
    service = run_service(
        _config(
            kafka,
            {
                "all": {"topic": topic_name, "schema": SCHEMA},
                "latest": {"topic": topic_name, "schema": SCHEMA, "index": "id"},
            },
        )
    )
    wait_until(service.ready, what="catch-up")
    assert service.size("all") == 500
    assert service.size("latest") == 50


def test_api_tables_and_metrics_describe_the_tables(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=1)
    produce(
        kafka.bootstrap,
        topic_name,
        (
            (0, None, json_bytes({"id": str(i), "sym": "S", "px": 1.0, "qty": i}))
            for i in range(100)
        ),
    )
    service = run_service(_config(kafka, {"t": {"topic": topic_name, "schema": SCHEMA}}))
    wait_until(service.ready, what="catch-up")
    status, tables = service.get("/api/tables")
    assert status == 200
    (table,) = tables
    assert table["name"] == "t" and table["topics"] == [topic_name]
    assert table["rows"] == 100 and table["schema"] == SCHEMA and table["lag"] == 0
    status, text = service.get("/metrics")
    assert status == 200
    assert 'livetables_records_consumed_total{table="t"} 100.0' in text
    assert 'livetables_rows_applied_total{op="update",table="t"} 100.0' in text
    assert 'livetables_table_rows{table="t"} 100.0' in text
    assert service.get("/healthz")[0] == 200
