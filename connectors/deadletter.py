"""Bad records, set aside: oversized records cut out before decoding, and a dead-letter sink.

A record larger than a table's ``max_record_bytes`` never reaches the decoder:
it becomes a :class:`DecodeError` (reason ``oversized``) like any other bad
record. Bad records of a table with a ``dead_letter_topic`` are produced there
unchanged (key and value bytes, original headers), with headers saying why and
where from, so they can be inspected or replayed:

=============================  ==============================================
``livetables-error-reason``    the decode error's reason (``invalid_json``...)
``livetables-error-detail``    what the decoder said, at most 200 characters
``livetables-source``          ``topic/partition/offset`` of the original
``livetables-table``           the table that refused it
=============================  ==============================================

Producing never blocks the consumer thread: the producer queues in the
background, and a full queue or a failed delivery is counted and logged
(``livetables_dead_letter_records_total{outcome="failed"}``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import fields, replace

from confluent_kafka import KafkaError, Producer

from connectors.base import DecodeError, RawBatch

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0
# Producer defaults for the dead-letter sink; kafka.client properties override them.
PRODUCER_DEFAULTS: dict[str, object] = {
    "enable.idempotence": True,
    "linger.ms": 20,
    "message.timeout.ms": 30000,
}
# Consumer-only properties a shared kafka.client section may hold; a producer warns on them.
_CONSUMER_ONLY = (
    "fetch.",
    "queued.",
    "auto.offset.reset",
    "enable.partition.eof",
    "isolation.level",
    "check.crcs",
    "max.partition.fetch.bytes",
    "group.",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
)


def split_oversized(raw: RawBatch, max_bytes: int) -> tuple[RawBatch, list[DecodeError]]:
    """The batch without values longer than ``max_bytes``, and an error for each of those."""
    values = raw.values
    try:
        longest = max(map(len, values), default=0)
    except TypeError:  # tombstones (None) in the batch: the slower way
        longest = max((len(v) for v in values if v is not None), default=0)
    if longest <= max_bytes:
        return raw, []
    keep = [i for i, v in enumerate(values) if v is None or len(v) <= max_bytes]
    errors = [
        DecodeError(
            raw.topic,
            raw.partitions[i],
            raw.offsets[i],
            "oversized",
            f"{len(v)} bytes, more than max_record_bytes ({max_bytes})",
        )
        for i, v in enumerate(values)
        if v is not None and len(v) > max_bytes
    ]
    return _take(raw, keep), errors


def _take(raw: RawBatch, keep: list[int]) -> RawBatch:
    """The batch's records at positions ``keep``, every per-record list filtered alike."""
    n = len(raw)
    changes = {}
    for f in fields(raw):
        column = getattr(raw, f.name)
        if isinstance(column, list) and len(column) == n:
            changes[f.name] = [column[i] for i in keep]
    return replace(raw, **changes)


class DeadLetterSink:
    """Produces bad records to dead-letter topics; one producer for every table."""

    def __init__(
        self,
        bootstrap_servers: str,
        client: dict[str, object],
        on_outcome: Callable[[str, str, int], None],
    ) -> None:
        properties = dict(PRODUCER_DEFAULTS)
        properties.update({k: v for k, v in client.items() if not k.startswith(_CONSUMER_ONLY)})
        properties["bootstrap.servers"] = bootstrap_servers
        properties["client.id"] = "livetables-dead-letters"
        properties["error_cb"] = self._on_error
        self._producer = Producer(properties)
        self._on_outcome = on_outcome  # (table, "sent" | "failed", count)
        self._logged_at = -LOG_INTERVAL_S
        # Delivery reports (and errors) are served by a thread of the sink's own.
        self._closing = threading.Event()
        self._reporter = threading.Thread(
            target=self._serve_reports, name="dead-letters", daemon=True
        )
        self._reporter.start()

    def send(self, table: str, topic: str, raw: RawBatch, errors: list[DecodeError]) -> None:
        """Queue the original records behind ``errors`` for ``topic``; never blocks."""
        where = {
            (p, o): i for i, (p, o) in enumerate(zip(raw.partitions, raw.offsets, strict=True))
        }
        headers_of = getattr(raw, "headers", None)
        failed = 0
        for error in errors:
            i = where.get((error.partition, error.offset))
            if i is None or error.topic != raw.topic:
                continue
            headers = list(headers_of[i] or []) if headers_of is not None else []
            headers += [
                ("livetables-error-reason", error.reason.encode()),
                ("livetables-error-detail", error.detail[:200].encode("utf-8", "replace")),
                ("livetables-source", f"{error.topic}/{error.partition}/{error.offset}".encode()),
                ("livetables-table", table.encode()),
            ]
            try:
                self._producer.produce(
                    topic,
                    value=raw.values[i],
                    key=raw.keys[i],
                    headers=headers,
                    on_delivery=lambda err, _msg: self._delivered(table, topic, err),
                )
            except (BufferError, KafkaError, ValueError) as exc:
                failed += 1
                self._log("dead-letter topic %s: cannot queue a record: %s", topic, exc)
        if failed:
            self._on_outcome(table, "failed", failed)

    def _delivered(self, table: str, topic: str, err: KafkaError | None) -> None:
        if err is None:
            self._on_outcome(table, "sent", 1)
        else:
            self._on_outcome(table, "failed", 1)
            self._log("dead-letter topic %s: a record was not delivered: %s", topic, err.str())

    def _on_error(self, error: KafkaError) -> None:
        self._log("dead-letter producer: %s", error.str())

    def _log(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL_S:
            self._logged_at = now
            log.warning(message, *args)

    def _serve_reports(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.5)

    def close(self, timeout: float = 5.0) -> None:
        self._closing.set()
        self._reporter.join(timeout)
        remaining = self._producer.flush(timeout)
        if remaining:
            log.warning("dead-letter producer: %d record(s) not delivered at shutdown", remaining)
