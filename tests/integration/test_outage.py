"""Broker outages: consumers reconnect and resume; nothing lost, nothing duplicated."""

from __future__ import annotations

from confluent_kafka import Producer

from tests.helpers import json_bytes, produce, wait_until

SCHEMA = {"id": "string", "seq": "integer"}


def _record(i: int, keys: int = 500) -> tuple[int, bytes, bytes]:
    key = f"k{i % keys}"
    return (i % 2, key.encode(), json_bytes({"id": key, "seq": i}))


def test_broker_stopped_mid_stream_and_restarted_loses_and_duplicates_nothing(
    fresh_kafka, topic_name, run_service
):
    kafka = fresh_kafka
    kafka.create_topic(topic_name, partitions=2)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "log": {"topic": topic_name, "schema": SCHEMA},
                "latest": {"topic": topic_name, "schema": SCHEMA, "index": "id"},
            },
        }
    )
    wait_until(service.ready, what="ready on an empty topic")
    produce(kafka.bootstrap, topic_name, (_record(i) for i in range(5000)))
    wait_until(lambda: service.size("log") == 5000, what="first half applied")

    # Records produced while the broker is down wait in the producer and go out on restart.
    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "enable.idempotence": True,
            "message.timeout.ms": 120000,
        }
    )
    kafka.stop()
    wait_until(
        lambda: service.metric("livetables_kafka_connected", table="log") == 0,
        timeout=60,
        what="the service to notice the outage",
    )
    assert service.get("/healthz")[0] == 200, "healthz must stay up during a broker outage"
    assert service.ready(), "a table that was ready stays ready during an outage"
    for partition, key, value in (_record(i) for i in range(5000, 10000)):
        producer.produce(topic_name, value=value, key=key, partition=partition)
    producer.poll(0)

    kafka.start()
    assert producer.flush(90) == 0
    wait_until(lambda: service.size("log") >= 10000, timeout=90, what="second half applied")
    seqs = service.columns("log")["seq"]
    assert sorted(seqs) == list(range(10000)), "append table must hold every record exactly once"
    expected = {f"k{k}": 9500 + k for k in range(500)}

    def latest_values() -> dict:
        latest = service.columns("latest")
        return dict(zip(latest["id"], latest["seq"], strict=True))

    # "latest" has a consumer of its own: it may still be catching up when "log" is done.
    wait_until(lambda: latest_values() == expected, timeout=90, what="latest caught up")
    wait_until(
        lambda: service.metric("livetables_kafka_connected", table="log") == 1,
        what="reconnected",
    )


def test_readyz_is_503_until_caught_up(fresh_kafka, topic_name, run_service):
    """With the broker down at start-up the table cannot be caught up: 503, then 200."""
    kafka = fresh_kafka
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, (_record(i, keys=10**9) for i in range(3000)))
    kafka.stop()
    service = run_service(
        {
            "kafka": {
                "bootstrap_servers": kafka.bootstrap,
                "client": {"socket.connection.setup.timeout.ms": 2000},
            },
            "tables": {"log": {"topic": topic_name, "schema": SCHEMA}},
        }
    )
    status, body = service.get("/readyz")
    assert status == 503
    assert body["tables"]["log"]["assigned"] is False
    assert service.get("/healthz")[0] == 200
    kafka.start()
    wait_until(service.ready, timeout=90, what="ready after the broker came up")
    assert service.size("log") == 3000
