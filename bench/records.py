"""The benchmark's records: small JSON (~55 bytes, 5 fields), produced fast.

Values are formatted from a template rather than ``json.dumps`` so producing
millions of them is limited by the Kafka client, not by the generator.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from confluent_kafka import Producer

from connectors.base import RawBatch
from service.config.tables import ColumnType

SCHEMA: dict[str, ColumnType] = {
    "i": "integer",
    "s": "string",
    "p": "float",
    "q": "integer",
    "b": "boolean",
}
KEYS = [str(k).encode() for k in range(4096)]
SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM", "XOM", "KO"]


def value(i: int, key_space: int | None = None) -> bytes:
    """One record; with ``key_space`` the id cycles so an indexed table holds that many rows."""
    ident = i % key_space if key_space else i
    sym = SYMBOLS[i % len(SYMBOLS)]
    price = 100 + (i * 7919 % 10000) / 100
    return (
        f'{{"i":{ident},"s":"{sym}","p":{price:.2f},"q":{(i * 31) % 1000},'
        f'"b":{"true" if i % 2 else "false"}}}'
    ).encode()


def bulk_producer(bootstrap: str) -> Producer:
    """A producer for pre-producing millions of records fast (large lz4 batches)."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def produce(
    bootstrap: str, topic: str, count: int, partitions: int, key_space: int | None = None
) -> float:
    """Produce ``count`` records round-robin over partitions; returns seconds taken."""
    producer = bulk_producer(bootstrap)
    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                # Keyed, as most production topics are (and csp's adapter skips keyless records).
                producer.produce(
                    topic, value(i, key_space), KEYS[i % 4096], partition=i % partitions
                )
                break
            except BufferError:
                producer.poll(0.01)
        if i % 50_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} benchmark records were not delivered")
    return time.perf_counter() - started


def live_value(seq: int, rng: random.Random) -> bytes:
    """A live record carrying its send time (epoch ms) for end-to-end latency."""
    now_ms = int(time.time() * 1000)
    sym = SYMBOLS[seq % len(SYMBOLS)]
    return (
        f'{{"i":{seq},"s":"{sym}","p":{rng.random() * 100:.2f},"q":{seq % 1000},"t":{now_ms}}}'
    ).encode()


def raw_batch(topic: str, values: Sequence[bytes], first_offset: int = 0) -> RawBatch:
    """Values as the Kafka source hands them over: no keys, partition 0, consecutive offsets."""
    n = len(values)
    records: list[bytes | None] = list(values)
    return RawBatch(
        topic, records, [None] * n, [0] * n, [0] * n, list(range(first_offset, first_offset + n))
    )
