"""Clients that stop reading or vanish cannot hold server memory or sessions."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

from confluent_kafka import Producer

from service.remote import connect
from tests.helpers import json_bytes, produce, wait_until
from tests.security_helpers import ServiceProcess, open_socket, poll, raw_websocket

SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer", "note": "string"}
KEYS = 5000
BUFFER_CAP = 4 * 1024 * 1024
# Resident memory the stalled clients may add to the service, over its size when they
# connected: two outgoing queues of BUFFER_CAP each, plus what the engine and the ingest
# queue use while updating at full speed. Measured: see the test's printed line.
RSS_GROWTH_BOUND = 160 * 1024 * 1024
RATE = int(os.environ.get("LIVETABLES_STALL_RATE", "50000"))  # records per second


def _tick(i: int) -> tuple[int, bytes, bytes]:
    key = f"k{i % KEYS}"
    record = {"id": key, "sym": f"S{i % 13}", "px": i / 7, "qty": i, "note": "x" * 40}
    return (i % 2, key.encode(), json_bytes(record))


class TickProducer:
    """Produces ticks at a steady rate (records per second) until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: int) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic = topic
        self.rate = rate
        self.sent = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = KEYS
        started = time.monotonic()
        while not self._stop.is_set():
            due = KEYS + int((time.monotonic() - started) * self.rate)
            while i < due:
                partition, key, value = _tick(i)
                try:
                    self.producer.produce(self.topic, value=value, key=key, partition=partition)
                    i += 1
                except BufferError:
                    self.producer.poll(0.01)
            self.producer.poll(0)
            self._stop.wait(0.01)  # pacing, not synchronisation
        self.sent = i - KEYS
        self.producer.flush(30)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(60)


def test_a_client_that_never_reads_is_disconnected_and_memory_stays_bounded(
    kafka, topic_name, tmp_path
):
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, (_tick(i) for i in range(KEYS)))
    service = ServiceProcess(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "server": {"max_client_buffer_bytes": BUFFER_CAP},
            "tables": {"ticks": {"topic": topic_name, "schema": SCHEMA, "index": "id"}},
        },
        tmp_path,
    )
    service.start()
    producer = TickProducer(kafka.bootstrap, topic_name, RATE)
    try:
        wait_until(service.ready, what="catch-up")

        async def scenario() -> dict[str, float]:
            # A Perspective client with a live flat view and a row-delta callback...
            remote = await connect(service.ws_url)
            table = await remote.client.open_table("ticks")
            view = await table.view()
            await view.on_update(lambda *_: None, mode="row")
            # ...and a browser replica, both read what they are sent at first, then stall.
            replica = await open_socket(service.ws_url.replace("/websocket", "/replicate/ticks"))
            hello = json.loads(await replica.read_message())
            assert hello["table"] == "ticks"
            await replica.read_message()  # the snapshot
            remote.stop_reading()
            baseline = service.rss_bytes()
            peak = baseline
            producer.start()
            started = time.monotonic()

            def both_dropped() -> bool:
                nonlocal peak
                peak = max(peak, service.rss_bytes())
                return service.metric("livetables_websocket_disconnects_total", reason="slow") == 2

            await poll(both_dropped, timeout=90, what="both stalled clients dropped as slow")
            dropped_after = time.monotonic() - started
            # Updates go on after the drop; memory must not keep growing.
            settle = time.monotonic() + 3
            while time.monotonic() < settle:
                peak = max(peak, service.rss_bytes())
                await asyncio.sleep(0.1)
            replica.close()
            remote.close()
            return {"baseline": baseline, "peak": peak, "seconds": dropped_after}

        measured = asyncio.run(scenario())
        producer.stop()
        growth = measured["peak"] - measured["baseline"]
        print(
            f"stalled clients: RSS {measured['baseline'] / 2**20:.0f} MiB before, "
            f"peak {measured['peak'] / 2**20:.0f} MiB (+{growth / 2**20:.0f} MiB), "
            f"both dropped as slow after {measured['seconds']:.1f}s; "
            f"{producer.sent} records produced meanwhile"
        )
        assert growth < RSS_GROWTH_BOUND, f"RSS grew by {growth / 2**20:.0f} MiB"
        assert service.alive()
        assert service.metric("livetables_websocket_sessions") == 0
        assert service.metric("livetables_websocket_views") == 0
    finally:
        producer.stop()
        service.stop()


def test_a_client_that_answers_no_pings_is_dropped(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=1)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "server": {
                "websocket_ping_interval_seconds": 0.3,
                "websocket_ping_timeout_seconds": 0.3,
            },
            "tables": {"ticks": {"topic": topic_name, "schema": SCHEMA, "index": "id"}},
        }
    )
    wait_until(service.ready, what="ready")
    sock = raw_websocket(service.service.port)
    try:
        wait_until(lambda: service.metric("livetables_websocket_sessions") == 1, what="open")
        wait_until(
            lambda: service.metric("livetables_websocket_sessions") == 0,
            timeout=15,
            what="the silent client dropped by the ping timeout",
        )
    finally:
        sock.close()
