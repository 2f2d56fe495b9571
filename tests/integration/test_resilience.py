"""No failure on a consumer or applier thread leaves a table dead, loses a record or applies one
twice. Against a real broker and the real service.

Nothing real is known to make these threads fail (each such failure would be a bug), so each
test makes a real object of the service fail on purpose, with pytest's monkeypatch or by
replacing one method of one live instance, and says which and why.
"""

from __future__ import annotations

import threading

from connectors import extract
from connectors import kafka as kafka_source
from connectors.decoding import BatchDecoder
from tests.helpers import json_bytes, produce, wait_until

SCHEMA = {"id": "string", "n": "integer"}


def _records(start: int, stop: int, partitions: int = 2) -> list[tuple[int, bytes, bytes]]:
    return [
        (i % partitions, f"r{i}".encode(), json_bytes({"id": f"r{i}", "n": i}))
        for i in range(start, stop)
    ]


def _tables(topic: str) -> dict:
    return {
        "orders": {"topic": topic, "schema": SCHEMA},
        "latest": {"topic": topic, "schema": SCHEMA, "index": "id"},
    }


def _assert_exactly(service, stop: int, missing: frozenset[int] = frozenset()) -> None:
    """Every record below ``stop`` but ``missing`` is a row of both tables, once."""
    expected = [n for n in range(stop) if n not in missing]
    # The two tables have consumers of their own: one may still be catching up.
    for table in ("orders", "latest"):
        wait_until(
            lambda table=table: service.size(table) >= len(expected), what=f"{table} caught up"
        )
    assert sorted(service.columns("orders")["n"]) == expected, "lost or doubled in orders"
    assert sorted(service.columns("latest")["n"]) == expected, "lost in latest"


def test_a_decoder_that_raises_loses_only_the_record_it_raises_on(
    kafka, topic_name, run_service, monkeypatch
):
    """The real decoder is made to raise on one marked record, as a decoder bug would."""
    original = BatchDecoder.decode

    def raising(self, raw):
        if b'"poison"' in b"".join(v or b"" for v in raw.values):
            raise RuntimeError("a decoder bug")
        return original(self, raw)

    monkeypatch.setattr(BatchDecoder, "decode", raising)
    kafka.create_topic(topic_name, partitions=2)
    poison = (0, b"poison", b'{"id": "poison", "n": -1}')
    produce(kafka.bootstrap, topic_name, [*_records(0, 300), poison, *_records(300, 600)])
    service = run_service(
        {"kafka": {"bootstrap_servers": kafka.bootstrap}, "tables": _tables(topic_name)}
    )
    wait_until(service.ready, what="catch-up")
    _assert_exactly(service, 600)
    for table in ("orders", "latest"):
        assert (
            service.metric("livetables_decode_errors_total", table=table, reason="decoder_error")
            == 1
        )
        assert service.metric("livetables_consumer_restarts_total", table=table) == 0
    assert service.get("/healthz")[0] == 200


def test_a_consumer_that_keeps_failing_is_reported_restarted_and_resumes_exactly_once(
    kafka, topic_name, run_service, monkeypatch
):
    """The extract step (between the read and the hand-over: connectors.extract.raw_batch on
    the portable path, columnar_batches on the native one) is made to raise while armed: the
    consumer fails after fetching records it has not handed over."""
    armed = threading.Event()

    def failing(original):
        def extract_or_fail(*args, **kwargs):
            if armed.is_set():
                raise RuntimeError("injected consumer failure")
            return original(*args, **kwargs)

        return extract_or_fail

    monkeypatch.setattr(extract, "raw_batch", failing(extract.raw_batch))
    monkeypatch.setattr(extract, "columnar_batches", failing(extract.columnar_batches))
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, _records(0, 500))
    service = run_service(
        {"kafka": {"bootstrap_servers": kafka.bootstrap}, "tables": _tables(topic_name)}
    )
    wait_until(service.ready, what="catch-up")

    armed.set()
    produce(kafka.bootstrap, topic_name, _records(500, 1000))

    def reported() -> bool:
        status, body = service.get("/healthz")
        return status == 500 and any(
            "table orders: consumer restarting" in p for p in body["problems"]
        )

    wait_until(reported, what="/healthz to name the restarting consumer")
    assert service.size("orders") == 500
    armed.clear()
    wait_until(lambda: service.size("orders") >= 1000, what="the records after the failures")
    wait_until(lambda: service.get("/healthz")[0] == 200, what="healthy again")
    _assert_exactly(service, 1000)
    assert service.metric("livetables_consumer_restarts_total", table="orders") >= 1
    produce(kafka.bootstrap, topic_name, _records(1000, 1100))
    wait_until(lambda: service.size("orders") == 1100, what="live after the restart")
    _assert_exactly(service, 1100)


def test_a_librdkafka_callback_that_raises_never_stops_or_restarts_the_consumer(
    kafka, topic_name, run_service, monkeypatch
):
    """librdkafka re-raises a stats_cb exception out of consume(); the statistics reader is
    made to raise every time, as a malformed statistics document could."""
    calls = []

    def failing(self, stats_json):
        calls.append(1)
        raise ValueError("injected statistics failure")

    monkeypatch.setattr(kafka_source.KafkaSource, "_read_stats", failing)
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, _records(0, 200))
    service = run_service(
        {
            "kafka": {
                "bootstrap_servers": kafka.bootstrap,
                "client": {"statistics.interval.ms": 100},
            },
            "tables": _tables(topic_name),
        }
    )
    wait_until(service.ready, what="catch-up")
    wait_until(lambda: len(calls) >= 6, what="several statistics callbacks")
    produce(kafka.bootstrap, topic_name, _records(200, 400))
    wait_until(lambda: service.size("orders") == 400, what="records after the callbacks")
    _assert_exactly(service, 400)
    assert service.metric("livetables_consumer_restarts_total", table="orders") == 0
    assert service.get("/healthz")[0] == 200


def test_the_applier_restarts_after_a_failure_and_an_engine_refusal_is_counted_once(
    kafka, topic_name, run_service
):
    """Two live objects of the service are made to fail once each: the progress tracker of
    "orders" after a batch was applied (the applier itself fails and restarts), and the table
    host's apply for one batch of "latest" (the engine refuses it: counted, not retried)."""
    kafka.create_topic(topic_name, partitions=2)
    service = run_service(
        {"kafka": {"bootstrap_servers": kafka.bootstrap}, "tables": _tables(topic_name)}
    )
    wait_until(service.ready, what="ready on an empty topic")
    ingestor = service.service.ingestor
    progress = ingestor.progress["orders"]
    on_applied = progress.on_applied
    host = service.service.host
    apply = host.apply
    failed_progress, refused = threading.Event(), []

    def failing_on_applied(positions):
        if positions and not failed_progress.is_set():
            failed_progress.set()
            raise RuntimeError("injected applier failure")
        on_applied(positions)

    def refusing_apply(name, batch):
        if name == "latest" and batch.row_count and not refused:
            refused.extend(batch.rows.column("n").to_pylist())
            raise RuntimeError("injected engine refusal")
        apply(name, batch)

    progress.on_applied = failing_on_applied
    host.apply = refusing_apply

    produce(kafka.bootstrap, topic_name, _records(0, 300))
    wait_until(failed_progress.is_set, what="the injected applier failure")
    produce(kafka.bootstrap, topic_name, _records(300, 600))
    wait_until(lambda: service.size("orders") == 600, what="orders after the restart")
    wait_until(
        lambda: service.size("latest") == 600 - len(refused), what="latest after the refusal"
    )
    wait_until(service.ready, what="progress caught up again")
    assert service.metric("livetables_applier_restarts_total") == 1
    assert sorted(service.columns("orders")["n"]) == list(range(600))
    assert sorted(service.columns("latest")["n"]) == sorted(set(range(600)) - set(refused))
    assert service.metric(
        "livetables_decode_errors_total", table="latest", reason="update_failed"
    ) == len(refused)
    assert service.get("/healthz")[0] == 200
