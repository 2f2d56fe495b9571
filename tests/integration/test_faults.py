"""Ingestion faults against a real broker: poison, oversized and drifting records, a dead-letter
topic, a 30 s broker outage, and offsets deleted by retention while a table was behind."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient

from tests.helpers import ServiceThread, json_bytes, produce, wait_until

SCHEMA = {"id": "string", "qty": "integer", "px": "float", "side": "string"}
MAX_RECORD = 512

# Bad records, each with a key of its own, and the reason each is refused for.
POISON = {
    b"bad-json": (b'{"id": "j", "qty": ', "invalid_json"),
    b"bad-array": (b"[1, 2, 3]", "not_object"),
    b"bad-null": (b"null", "not_object"),
    b"bad-number": (b"42", "not_object"),
    b"bad-type": (
        json_bytes({"id": "t", "qty": "lots", "px": 1.0, "side": "buy"}),
        "type_mismatch",
    ),
    b"bad-size": (
        json_bytes({"id": "big", "qty": 1, "px": 1.0, "side": "buy", "memo": "m" * 1000}),
        "oversized",
    ),
    b"bad-tombstone": (None, "unexpected_tombstone"),
}


def _order(i: int) -> dict:
    return {"id": f"o{i}", "qty": i, "px": i / 2, "side": "buy" if i % 2 else "sell"}


def _stream(n: int) -> list[tuple[int, bytes, bytes | None]]:
    """n valid orders with every poison record and two drifted ones spread among them."""
    records: list[tuple[int, bytes, bytes | None]] = [
        (i % 2, f"o{i}".encode(), json_bytes(_order(i))) for i in range(n)
    ]
    extras = [
        *POISON.items(),
        # Drift: unknown fields are ignored, missing ones are null.
        (
            b"drift-extra",
            (json_bytes({**_order(-1), "id": "x1", "venue": "XNAS", "n": {"a": 1}}), None),
        ),
        (b"drift-missing", (json_bytes({"id": "x2", "qty": 2}), None)),
    ]
    step = n // (len(extras) + 1)
    for j, (key, (value, _reason)) in enumerate(extras):
        records.insert((j + 1) * step + j, (j % 2, key, value))
    return records


def _expected_rows(n: int) -> set[tuple]:
    rows = {(o["id"], o["qty"], o["px"], o["side"]) for o in map(_order, range(n))}
    rows.add(("x1", -1, -0.5, "buy"))
    rows.add(("x2", 2, None, None))
    return rows


def _rows(service: ServiceThread, table: str) -> list[tuple]:
    columns = service.columns(table)
    return list(zip(*(columns[c] for c in SCHEMA), strict=True))


def test_poison_oversized_and_drifting_records_with_a_dead_letter_topic(
    kafka, topic_name, run_service
):
    dead = f"{topic_name}-dead"
    kafka.create_topic(topic_name, partitions=2)
    kafka.create_topic(dead, partitions=1)
    produce(kafka.bootstrap, topic_name, _stream(2000))
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "orders": {
                    "topic": topic_name,
                    "schema": SCHEMA,
                    "max_record_bytes": MAX_RECORD,
                    "dead_letter_topic": dead,
                },
                "latest": {"topic": topic_name, "schema": SCHEMA, "index": "id"},
            },
        }
    )
    wait_until(service.ready, what="catch-up")
    rows = _rows(service, "orders")
    assert len(rows) == len(set(rows)) == 2002
    assert set(rows) == _expected_rows(2000)
    reasons = Counter(reason for _value, reason in POISON.values())
    for reason, count in reasons.items():
        assert service.metric("livetables_decode_errors_total", table="orders", reason=reason) == (
            count
        ), reason
    # The indexed table reads the same records: the tombstone removes nothing (no such key),
    # and the oversized record is within its default 1 MiB limit, so it is a row there.
    latest = {row[0] for row in _rows(service, "latest")}
    assert latest == {r[0] for r in _expected_rows(2000)} | {"big"}

    # Every bad record of "orders", as it was, on the dead-letter topic, with why and where from.
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap, "group.id": "dlq-check", "enable.auto.commit": False}
    )
    consumer.assign([KafkaTopicPartition(dead, 0, 0)])
    found: dict[bytes, tuple[bytes | None, dict[str, bytes]]] = {}
    deadline = time.monotonic() + 30
    while len(found) < len(POISON) and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None or message.error():
            continue
        found[message.key()] = (message.value(), dict(message.headers() or []))
    consumer.close()
    assert set(found) == set(POISON)
    for key, (value, headers) in found.items():
        original, reason = POISON[key]
        assert value == original, key
        assert headers["livetables-error-reason"] == reason.encode()
        assert headers["livetables-table"] == b"orders"
        topic, partition, offset = headers["livetables-source"].decode().rsplit("/", 2)
        assert topic == topic_name and int(partition) in (0, 1) and int(offset) >= 0
    wait_until(
        lambda: (
            service.metric("livetables_dead_letter_records_total", table="orders", outcome="sent")
            == len(POISON)
        ),
        what="dead letters acknowledged",
    )


def test_a_thirty_second_broker_outage_mid_stream_loses_and_duplicates_nothing(
    fresh_kafka, topic_name, run_service
):
    kafka = fresh_kafka
    kafka.create_topic(topic_name, partitions=2)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "orders": {"topic": topic_name, "schema": SCHEMA, "max_record_bytes": MAX_RECORD},
                "latest": {"topic": topic_name, "schema": SCHEMA, "index": "id"},
            },
        }
    )
    wait_until(service.ready, what="ready on an empty topic")
    stream = _stream(6000)
    half = len(stream) // 2
    produce(kafka.bootstrap, topic_name, stream[:half])
    first = sum(1 for _p, k, v in stream[:half] if k not in POISON)
    wait_until(lambda: service.size("orders") == first, what="first half applied")

    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "enable.idempotence": True,
            "message.timeout.ms": 180000,
        }
    )
    kafka.stop()
    outage_ends = time.monotonic() + 30
    wait_until(
        lambda: service.metric("livetables_kafka_connected", table="orders") == 0,
        timeout=30,
        what="the outage noticed",
    )
    for partition, key, value in stream[half:]:
        producer.produce(topic_name, value=value, key=key, partition=partition)
    producer.poll(0)
    status, body = service.get("/readyz")
    assert status == 200 and body["status"] == "degraded"
    assert sorted(body["kafka_unreachable"]) == ["latest", "orders"]

    # The broker stays down for 30 s; the service stays healthy and serving all along.
    checks = 0
    while time.monotonic() < outage_ends:
        assert service.get("/healthz")[0] == 200
        assert service.get("/api/tables")[0] == 200
        assert service.size("orders") == first
        checks += 1
        time.sleep(0.5)  # the outage's own duration, not a synchronisation
    assert checks > 10

    kafka.start()
    assert producer.flush(120) == 0
    wait_until(
        lambda: service.size("orders") >= len(_expected_rows(6000)),
        timeout=90,
        what="the second half applied",
    )
    rows = _rows(service, "orders")
    assert len(rows) == len(set(rows)), "a record was applied twice"
    assert set(rows) == _expected_rows(6000), "a record is missing or wrong"
    latest = {row[0] for row in _rows(service, "latest")}
    assert latest == {r[0] for r in _expected_rows(6000)} | {"big"}
    wait_until(lambda: service.get("/readyz")[1] == {"status": "ready"}, what="ready again")
    assert service.metric("livetables_kafka_connected", table="orders") == 1
    assert service.metric("livetables_decode_errors_total", table="orders", reason="oversized") == 1


def test_offsets_deleted_by_retention_while_behind_reset_per_the_start_policy(
    kafka, topic_name, caplog
):
    """The table is held behind (its applier blocked), the records it still needs are deleted,
    and on release it resumes at the earliest remaining offset, logging the reset."""
    kafka.create_topic(topic_name, partitions=1)
    # Small producer batches: a fetch returns whole batches, so these keep each fetch small.
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "batch.size": 512, "linger.ms": 1})
    for i in range(20000):
        while True:
            try:
                producer.produce(topic_name, value=json_bytes(_order(i)), key=f"o{i}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    service = ServiceThread(
        {
            "kafka": {
                "bootstrap_servers": kafka.bootstrap,
                # Small fetches and a tiny local queue: the consumer cannot run far ahead.
                "client": {
                    "fetch.max.bytes": 1024,
                    "max.partition.fetch.bytes": 1024,
                    "message.max.bytes": 1000,
                    "queued.min.messages": 1,
                    "queued.max.messages.kbytes": 1,
                },
            },
            "tables": {"orders": {"topic": topic_name, "schema": SCHEMA}},
        }
    )
    host = service.service.host
    apply = host.apply
    entered, release = threading.Event(), threading.Event()

    def held_apply(name, batch):
        entered.set()
        release.wait(60)
        apply(name, batch)

    host.apply = held_apply
    caplog.set_level(logging.INFO, logger="connectors.kafka.librdkafka")
    service.start()
    try:
        assert entered.wait(30), "no batch reached the applier"
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        futures = admin.delete_records([KafkaTopicPartition(topic_name, 0, 15000)])
        for future in futures.values():
            future.result(timeout=30)
        release.set()
        wait_until(lambda: service.size("orders") >= 5000, timeout=60, what="resumed")
        wait_until(service.ready, timeout=60, what="caught up")
        qty = sorted(service.columns("orders")["qty"])
        kept = [q for q in qty if q < 15000]
        assert qty[len(kept) :] == list(range(15000, 20000)), "the retained records, once each"
        assert kept == list(range(len(kept))), "what was read before the deletion, once each"
        assert 0 < len(kept) < 15000
        resets = [
            r
            for r in caplog.records
            if "offset out of range" in r.getMessage() and "orders" in r.getMessage()
        ]
        assert resets and resets[0].levelno == logging.WARNING
        assert "earliest" in resets[0].getMessage()
    finally:
        release.set()
        service.stop()
