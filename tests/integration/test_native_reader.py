"""The native batch reader hands over exactly what confluent-kafka's messages hold.

Against the real broker, the same topics are read twice: by a source on the native
reader (``connectors/kafkabatch.py``) and by one on confluent-kafka's Python messages.
Every record (topic, partition, offset, key, value, timestamp, headers; tombstones and
records without a key among them) and every end-of-partition position must be the
same, and per partition in Kafka order.
"""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import Consumer, Producer

from connectors import kafkabatch
from connectors.kafka import KafkaSource
from connectors.properties import consumer_properties
from connectors.source import SourceCallbacks, StartPolicy
from tests.helpers import wait_until

pytestmark = pytest.mark.kafka


class Captured:
    """What a source hands over: records in hand-over order, and the positions reported."""

    def __init__(self) -> None:
        self.records: list[tuple] = []
        self.positions: dict[tuple[str, int], int] = {}
        self.ends: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()

    def on_batch(self, raw, positions) -> None:
        values, keys = raw.values, raw.keys
        headers = raw.headers or [None] * len(raw)
        with self.lock:
            for i in range(len(raw)):
                self.records.append(
                    (
                        raw.topic,
                        int(raw.partitions[i]),
                        int(raw.offsets[i]),
                        keys[i],
                        values[i],
                        int(raw.timestamps_ms[i]),
                        headers[i] or None,
                    )
                )
            self.positions.update(positions)

    def on_assigned(self, _starts, ends) -> None:
        with self.lock:
            self.ends.update(ends)

    def caught_up(self) -> bool:
        with self.lock:
            return bool(self.ends) and all(
                self.positions.get(tp, -1) >= end for tp, end in self.ends.items()
            )


def _read(kafka, topics: list[str], native: bool, headers: bool) -> Captured:
    captured = Captured()
    callbacks = SourceCallbacks(
        on_batch=captured.on_batch,
        on_assigned=captured.on_assigned,
        on_watermarks=lambda _highs: None,
        on_connected=lambda _connected: None,
    )
    name = f"native-{native}"
    properties = consumer_properties(kafka.bootstrap, {}, StartPolicy("earliest"), name)
    source = KafkaSource(
        name, topics, properties, StartPolicy("earliest"), callbacks, headers, native=native
    )
    source.start()
    try:
        wait_until(captured.caught_up, what=f"the {'native' if native else 'portable'} reader")
    finally:
        source.stop()
    return captured


def _produce(kafka, topic: str, partitions: int, count: int, with_headers: bool) -> None:
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})
    for i in range(count):
        key = None if i % 7 == 0 else f"key-{i % 50}".encode()
        value = None if i % 11 == 0 else f'{{"n":{i},"text":"{"x" * (i % 300)}"}}'.encode()
        kwargs = {}
        if with_headers and i % 3:
            kwargs["headers"] = [("h", f"v{i}".encode()), ("empty", None), ("h", b"again")]
        producer.produce(topic, value=value, key=key, partition=i % partitions, **kwargs)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def test_the_native_reader_is_available_here():
    """The build compiled it and it binds to confluent-kafka's librdkafka: without this,
    every other test here would compare the portable path with itself."""
    assert kafkabatch.available(), kafkabatch._why_not


@pytest.mark.parametrize("with_headers", [False, True], ids=["plain", "headers"])
def test_native_and_portable_reads_hand_over_the_same_records(kafka, topic_name, with_headers):
    topics = [f"{topic_name}-a", f"{topic_name}-b"]
    for topic in topics:
        kafka.create_topic(topic, partitions=3)
    _produce(kafka, topics[0], 3, 6000, with_headers)
    _produce(kafka, topics[1], 3, 1500, with_headers)

    native = _read(kafka, topics, native=True, headers=with_headers)
    portable = _read(kafka, topics, native=False, headers=with_headers)

    assert len(native.records) == 7500
    assert sorted(native.records, key=lambda r: r[:3]) == sorted(
        portable.records, key=lambda r: r[:3]
    )
    assert native.positions == portable.positions
    for records in (native.records, portable.records):
        # Hand-over order keeps Kafka order within each partition.
        last: dict[tuple[str, int], int] = {}
        for topic, partition, offset, *_ in records:
            assert offset > last.get((topic, partition), -1)
            last[(topic, partition)] = offset
    tombstones = [r for r in native.records if r[4] is None]
    keyless = [r for r in native.records if r[3] is None]
    assert tombstones and keyless
    if with_headers:
        assert any(r[6] == [("h", b"v1"), ("empty", None), ("h", b"again")] for r in native.records)


def test_an_empty_topic_reports_its_end_positions(kafka, topic_name):
    kafka.create_topic(topic_name, partitions=2)
    captured = _read(kafka, [topic_name], native=True, headers=False)
    assert captured.records == []
    assert captured.positions == {(topic_name, 0): 0, (topic_name, 1): 0}


def test_a_consumer_it_cannot_vouch_for_falls_back_to_the_portable_path(kafka, caplog):
    """A handle whose name does not match the client id (as if confluent-kafka laid out its
    Consumer differently) is refused with a warning; the caller reads the portable way."""
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap, "group.id": "g", "client.id": "one-name"}
    )
    try:
        with caplog.at_level(logging.WARNING, logger="connectors.kafkabatch"):
            kafkabatch._warned = False
            assert kafkabatch.open_reader(consumer, "another-name", capacity=10) is None
        assert "confluent-kafka's Python messages" in caplog.text
        reader = kafkabatch.open_reader(consumer, "one-name", capacity=10)
        assert reader is not None
        reader.close()
        with pytest.raises(RuntimeError, match="closed"):
            reader.read(10, 0)
    finally:
        consumer.close()
    assert kafkabatch.open_reader(consumer, "one-name", capacity=10) is None  # closed
