"""What the topics hold now: the first and the next offset of every partition.

Asked once before a table resumes from saved offsets: an offset below a
partition's first one was deleted by retention (the records between are gone),
and one past its end, or a partition that is no longer there, means the topic
was deleted and created again. Either way the saved offsets no longer describe
the topic.
"""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from connectors.kafkalog import LibrdkafkaLog
from connectors.source import Partition

LogRanges = dict[Partition, tuple[int, int]]
"""(first offset, next offset) per partition"""


def log_ranges(
    properties: dict[str, object], topics: list[str], name: str, timeout: float = 10.0
) -> LogRanges:
    """The range of every partition of ``topics`` that exists; KafkaException if unreachable.

    ``properties`` are the table's consumer properties (its security settings
    among them); nothing is consumed and nothing committed.
    """
    settings = dict(properties)
    settings["logger"] = LibrdkafkaLog(name, str(settings.get("auto.offset.reset", "earliest")))
    consumer = Consumer(settings)
    try:
        ranges: LogRanges = {}
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            if metadata is None:
                continue
            if metadata.error is not None:
                if metadata.error.code() in (
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                    KafkaError._UNKNOWN_TOPIC,
                ):
                    continue
                raise KafkaException(metadata.error)
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(
                    KafkaTopicPartition(topic, partition), timeout=timeout
                )
                ranges[(topic, partition)] = (low, high)
        return ranges
    finally:
        consumer.close()
