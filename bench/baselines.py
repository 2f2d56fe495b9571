"""What people write without livetables, measured on the same topic in the same run.

* naive: the streaming style of Perspective's docs: decode one record, ``update()`` it.
* batched: a competent glue script: consume 10k, ``json.loads`` each, one
  ``update(list_of_dicts)`` per batch.
"""

from __future__ import annotations

import json
import time
import uuid

import perspective
from confluent_kafka import Consumer, TopicPartition

from bench.records import SCHEMA


def _consumer(bootstrap: str, topic: str, partitions: int) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 1,
        }
    )
    consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
    return consumer


def _table(**options: object) -> perspective.Table:
    return perspective.Server().new_local_client().table(dict(SCHEMA), **options)


def naive(bootstrap: str, topic: str, partitions: int, records: int, **options: object) -> dict:
    """One ``json.loads`` and one ``update()`` per record."""
    consumer = _consumer(bootstrap, topic, partitions)
    table = _table(**options)
    done, started = 0, None
    while done < records:
        for message in consumer.consume(1000, 1.0):
            value = message.value()
            if message.error() or value is None or done >= records:
                continue
            if started is None:
                started = time.perf_counter()
            table.update([json.loads(value)])
            done += 1
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return {"records": done, "seconds": seconds}


def batched(bootstrap: str, topic: str, partitions: int, records: int, **options: object) -> dict:
    """10k records per poll, ``json.loads`` each, one ``update(list)`` per batch."""
    consumer = _consumer(bootstrap, topic, partitions)
    table = _table(**options)
    done, started = 0, None
    while done < records:
        values = [
            v
            for m in consumer.consume(10_000, 1.0)
            if m.error() is None and (v := m.value()) is not None
        ]
        if not values:
            continue
        if started is None:
            started = time.perf_counter()
        values = values[: records - done]
        table.update([json.loads(v) for v in values])
        done += len(values)
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return {"records": done, "seconds": seconds}
