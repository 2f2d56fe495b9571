"""Test helpers: polling with a deadline, producing records, running the service."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from service.config import parse_config
from service.runtime import Service

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
) -> T:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[int | None, bytes | None, bytes | None]],
    timestamp_ms: int | None = None,
) -> int:
    """Produce (partition, key, value) records in order and wait until all are acknowledged."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
    )
    failures: list[str] = []

    def delivered(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    for partition, key, value in records:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": delivered}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 5000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records not delivered"
    assert not failures, failures[:3]
    return count


def json_bytes(record: dict) -> bytes:
    return json.dumps(record).encode()


def http_get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None  # not listening (yet)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


class ServiceThread:
    """The real service on a loopback port, run on an event loop of its own thread."""

    def __init__(self, config: dict, port: int = 0) -> None:
        config = {"server": {"host": "127.0.0.1", "port": port}, **config}
        self.config = parse_config(config, "<test config>")
        self.port = port
        self.service = Service(self.config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        started = self.service.start("127.0.0.1", self.port)
        asyncio.run_coroutine_threadsafe(started, self.loop).result(30)

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.service.port}/websocket"

    def get(self, path: str) -> tuple[int, Any]:
        return http_get(self.url + path)

    def columns(self, table: str) -> dict[str, list]:
        view = self.service.host.tables[table].view()
        try:
            return view.to_columns()
        finally:
            view.delete()

    def size(self, table: str) -> int:
        return self.service.host.size(table)

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def metric(self, name: str, **labels: str) -> float:
        """The current value of one sample of the service's metrics (0 if absent)."""
        value = self.service.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    """Up to ``expected`` messages of partition 0 of ``topic`` from the start (a dead-letter
    topic, typically), polling until they are there or ``timeout`` runs out."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tests-read-topic",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([KafkaTopicPartition(topic, 0, 0)])
    found = []
    deadline = time.monotonic() + timeout
    while len(found) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            found.append(message)
    consumer.close()
    return found
