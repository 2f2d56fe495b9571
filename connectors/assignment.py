"""Which partitions a table's topics have, and where reading each one starts.

The source assigns partitions itself (no consumer group): it lists them from the
topics' metadata and picks each start offset from the watermarks and the start
policy. Plain functions over a confluent-kafka ``Consumer``, so the source's loop
stays about reading.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from connectors.source import Partition, StartPolicy

log = logging.getLogger("connectors.kafka")


def list_partitions(consumer: Consumer, topics: list[str], table: str) -> list[Partition]:
    """Every partition of ``topics``; a topic that does not exist (yet) is skipped, logged."""
    found: list[Partition] = []
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=10)
        topic_meta = metadata.topics.get(topic)
        if topic_meta is None or topic_meta.error is not None:
            if topic_meta is not None and topic_meta.error.code() not in (
                KafkaError.UNKNOWN_TOPIC_OR_PART,
                KafkaError._UNKNOWN_TOPIC,
            ):
                raise KafkaException(topic_meta.error)
            log.warning("table %s: topic %s does not exist (yet)", table, topic)
            continue
        found.extend((topic, p) for p in topic_meta.partitions)
    return found


def start_and_end_offsets(
    consumer: Consumer, partitions: list[Partition], policy: StartPolicy, initial: bool
) -> tuple[dict[Partition, int], dict[Partition, int]]:
    """Start offsets by policy, and the end offsets to catch up to.

    Partitions added while running (``initial`` false) hold only new data: all of it is read.
    """
    ends: dict[Partition, int] = {}
    lows: dict[Partition, int] = {}
    for tp in partitions:
        low, high = consumer.get_watermark_offsets(KafkaTopicPartition(*tp), timeout=10)
        lows[tp], ends[tp] = low, high
    if not initial:
        return {tp: OFFSET_BEGINNING for tp in partitions}, ends
    if policy.kind == "earliest":
        return {tp: lows[tp] for tp in partitions}, ends
    if policy.kind == "latest":
        return {tp: ends[tp] for tp in partitions}, ends
    assert policy.window is not None  # the third kind, a lookback
    since_ms = int((time.time() - policy.window.total_seconds()) * 1000)
    wanted = [KafkaTopicPartition(t, p, since_ms) for t, p in partitions]
    starts: dict[Partition, int] = {}
    for found in consumer.offsets_for_times(wanted, timeout=10):
        tp = (found.topic, found.partition)
        starts[tp] = found.offset if found.offset >= 0 else ends[tp]
    return starts, ends
