"""A local single-node Apache Kafka (KRaft) that livetables runs itself.

Used by ``livetables demo``, the tests and the benchmarks: the broker's jars
come from Maven Central once into a cache directory, and each broker runs on
free loopback ports with a data directory of its own.
"""

from service.localkafka.broker import LocalKafka
from service.localkafka.jars import KAFKA_VERSION, LocalKafkaError, ensure_jars

__all__ = ["KAFKA_VERSION", "LocalKafka", "LocalKafkaError", "ensure_jars"]
