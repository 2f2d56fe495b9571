"""Dead letters against a real broker: an oversized record and failed dead-letter writes never
stop a table; what could be copied is on the dead-letter topic, what could not is counted."""

from __future__ import annotations

from tests.helpers import json_bytes, produce, read_topic, wait_until

SCHEMA = {"id": "string", "n": "integer"}
HUGE = 50_000_000  # bytes: far above max_record_bytes and the dead-letter producer's limit
LARGE_TOPIC = {"max.message.bytes": str(64 * 1024 * 1024)}


def _records(start: int, stop: int) -> list[tuple[int, bytes, bytes]]:
    return [(0, f"r{i}".encode(), json_bytes({"id": f"r{i}", "n": i})) for i in range(start, stop)]


def _produce_huge(bootstrap: str, topic: str, key: bytes, size: int) -> bytes:
    """One JSON record of ``size`` bytes: the topic and this producer both accept it."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "message.max.bytes": 64 * 1024 * 1024,
            "compression.type": "none",
        }
    )
    head, tail = b'{"id": "huge", "memo": "', b'"}'
    value = head + b"x" * (size - len(head) - len(tail)) + tail
    producer.produce(topic, key=key, value=value)
    assert producer.flush(60) == 0
    return value


def test_a_50_mb_record_is_refused_copied_truncated_and_the_table_keeps_ingesting(
    kafka, topic_name, run_service
):
    dead = f"{topic_name}-dead"
    kafka.create_topic(topic_name, partitions=1, config=LARGE_TOPIC)
    kafka.create_topic(dead, partitions=1)
    produce(kafka.bootstrap, topic_name, _records(0, 100))
    huge = _produce_huge(kafka.bootstrap, topic_name, b"huge", HUGE)
    produce(kafka.bootstrap, topic_name, _records(100, 200))
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "orders": {
                    "topic": topic_name,
                    "schema": SCHEMA,
                    "max_record_bytes": 1048576,
                    "dead_letter_topic": dead,
                }
            },
        }
    )
    wait_until(lambda: service.size("orders") == 200, timeout=60, what="the records after it")
    assert service.metric("livetables_decode_errors_total", table="orders", reason="oversized") == 1
    # Still alive: a record produced now arrives too.
    produce(kafka.bootstrap, topic_name, _records(200, 201))
    wait_until(lambda: service.size("orders") == 201, what="a live record after the huge one")
    assert service.get("/healthz")[0] == 200
    assert sorted(service.columns("orders")["n"]) == list(range(201))

    [copy] = read_topic(kafka.bootstrap, dead, 1)
    headers = dict(copy.headers())
    assert copy.key() == b"huge"
    assert headers["livetables-error-reason"] == b"oversized"
    assert headers["livetables-original-size"] == str(HUGE).encode()
    assert headers["livetables-truncated"] == b"value"
    assert 0 < len(copy.value()) < 1_000_000
    assert copy.value() == huge[: len(copy.value())]
    wait_until(
        lambda: (
            service.metric("livetables_dead_letter_records_total", table="orders", outcome="sent")
            == 1
        ),
        what="the truncated copy acknowledged",
    )
    assert service.metric("livetables_dead_letter_truncated_total", table="orders") == 1


def test_dead_letter_writes_to_a_missing_topic_through_a_full_queue_are_counted_not_stalling(
    kafka, topic_name, run_service
):
    kafka.create_topic(topic_name, partitions=1)
    bad = [(0, f"bad{i}".encode(), b'{"id": ') for i in range(5)]
    produce(kafka.bootstrap, topic_name, _records(0, 50) + bad + _records(50, 100))
    service = run_service(
        {
            "kafka": {
                "bootstrap_servers": kafka.bootstrap,
                # Producer properties (the consumers sharing kafka.client ignore them): a
                # copy to the missing topic fails after 3 s, and with room for one queued
                # copy the others are refused at once (queue full).
                "client": {"message.timeout.ms": 3000, "queue.buffering.max.messages": 1},
            },
            "tables": {
                "orders": {
                    "topic": topic_name,
                    "schema": SCHEMA,
                    "dead_letter_topic": f"{topic_name}-missing",
                }
            },
        }
    )
    wait_until(lambda: service.size("orders") == 100, what="every good record, not stalled")
    assert (
        service.metric("livetables_decode_errors_total", table="orders", reason="invalid_json") == 5
    )
    wait_until(
        lambda: (
            service.metric("livetables_dead_letter_records_total", table="orders", outcome="failed")
            == 5
        ),
        what="the failed dead-letter writes counted",
    )
    produce(kafka.bootstrap, topic_name, _records(100, 110))
    wait_until(lambda: service.size("orders") == 110, what="still ingesting")
    assert service.get("/healthz")[0] == 200
