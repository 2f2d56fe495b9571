"""Bad records, set aside: oversized records cut out before decoding, and a dead-letter sink.

A record larger than a table's ``max_record_bytes`` never reaches the decoder:
it becomes a :class:`DecodeError` (reason ``oversized``) like any other bad
record. Bad records of a table with a ``dead_letter_topic`` are produced there
(key and value bytes, original headers), with headers saying why and where
from, so they can be inspected or replayed:

=============================  ==============================================
``livetables-error-reason``    the decode error's reason (``invalid_json``...)
``livetables-error-detail``    what the decoder said, at most 200 characters
``livetables-source``          ``topic/partition/offset`` of the original
``livetables-table``           the table that refused it
``livetables-truncated``       only on a cut copy: what was cut (``value``,
                               ``headers``, ``key``, comma-separated)
``livetables-original-size``   only on a cut copy: the value's size in bytes
=============================  ==============================================

A copy is always sized to fit under the producer's ``message.max.bytes``: a
record too large to copy whole (an oversized one, typically) is copied cut
down, value first, then its original headers, then its key, so the copy is a
produce that can succeed rather than one that must fail.

Writing a dead letter never blocks, stalls or stops the consumer thread: the
producer queues in the background, and anything that goes wrong (a full
queue, a missing or forbidden topic, a broker down, a produce that raises) is
counted (``livetables_dead_letter_records_total{outcome="failed"}``) and
logged with the record's topic/partition/offset, at most once per
``LOG_INTERVAL_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.base import DecodeError, DecodeReason, RawBatch
from connectors.kafkalog import LibrdkafkaLog

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0
# librdkafka's own default for message.max.bytes, which bounds key + value + headers.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
# Room kept free under message.max.bytes for the record's framing (varints, attributes).
FRAMING_ALLOWANCE = 512
# What a produce call may raise for one record; each is that record's failure, no more.
PRODUCE_ERRORS = (KafkaException, BufferError, ValueError, TypeError, OverflowError)
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


def split_oversized(
    raw: RawBatch, max_bytes: int, count_keys: bool = False
) -> tuple[RawBatch, list[DecodeError]]:
    """The batch without records larger than ``max_bytes``, and an error for each of those.

    A record's size is its value's, plus its key's when ``count_keys`` (a table
    that keeps keys, as its index or as columns: a huge key would be a huge row).
    The usual batch costs one C-level pass per column: only when the longest value
    plus the longest key could exceed the limit is each record measured.
    """
    longest = raw.longest_value() + (raw.longest_key() if count_keys else 0)
    if longest <= max_bytes:
        return raw, []
    keys = raw.keys if count_keys else [None] * len(raw)
    sizes = [len(v or b"") + len(k or b"") for v, k in zip(raw.values, keys, strict=True)]
    keep = [i for i, size in enumerate(sizes) if size <= max_bytes]
    what = "key and value" if count_keys else "value"
    errors = [
        DecodeError(
            *raw.where(i),
            DecodeReason.OVERSIZED,
            f"{what} {size} bytes, more than max_record_bytes ({max_bytes})",
        )
        for i, size in enumerate(sizes)
        if size > max_bytes
    ]
    return raw.take(keep), errors


Headers = list[tuple[str, bytes]]


def headers_size(headers: Headers) -> int:
    """Bytes the headers take in a record, counted generously (name, value, two varints)."""
    return sum(len(name.encode()) + len(value or b"") + 10 for name, value in headers)


def fit_copy(
    value: bytes | None, key: bytes | None, original: Headers, reason: Headers, limit: int
) -> tuple[bytes | None, bytes | None, Headers, bool]:
    """The dead-letter copy of a record, cut down until it fits in ``limit`` bytes.

    ``reason`` (the livetables headers) is always kept. What must go goes in this
    order: the end of the value, then the original headers, then the key; a copy
    that was cut says what was cut and how large the value was. Returns the copy's
    value, key and headers, and whether it was cut.
    """
    whole = original + reason
    if len(value or b"") + len(key or b"") + headers_size(whole) + FRAMING_ALLOWANCE <= limit:
        return value, key, whole, False
    size = str(len(value or b"")).encode()
    for dropped in ((), ("headers",), ("headers", "key")):
        kept_headers = [] if "headers" in dropped else original
        kept_key = None if "key" in dropped else key
        # Room is reckoned with the longest label the marks can carry.
        marks = [("livetables-truncated", b"value,headers,key"), ("livetables-original-size", size)]
        room = (
            limit
            - FRAMING_ALLOWANCE
            - len(kept_key or b"")
            - headers_size(kept_headers + reason + marks)
        )
        if room >= 0:
            cut_value = value is not None and len(value) > room
            label = ",".join((("value",) if cut_value else ()) + dropped)
            marks[0] = ("livetables-truncated", label.encode())
            kept_value = value[:room] if cut_value and value is not None else value
            return kept_value, kept_key, kept_headers + reason + marks, True
    # Not even the livetables headers fit (a tiny message.max.bytes): send them anyway
    # and let the producer refuse it; the refusal is counted like any other failure.
    return b"", None, reason + marks, True


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
        # Its log lines go to the service's log, throttled, not to stderr.
        properties["logger"] = LibrdkafkaLog("", "", client="dead-letter producer")
        self._producer = Producer(properties)  # refuses an invalid property first
        self.max_message_bytes = int(
            str(properties.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        )
        self._on_outcome = on_outcome  # (table, "sent" | "failed" | "truncated", count)
        self._logged_at = -LOG_INTERVAL_S
        # Delivery reports (and errors) are served by a thread of the sink's own.
        self._closing = threading.Event()
        self._reporter = threading.Thread(
            target=self._serve_reports, name="dead-letters", daemon=True
        )
        self._reporter.start()

    def send(self, table: str, topic: str, raw: RawBatch, errors: list[DecodeError]) -> None:
        """Queue a copy of the records behind ``errors`` for ``topic``; never blocks or raises.

        Copies too large for the producer are cut down (:func:`fit_copy`) and counted
        as truncated; a record that cannot be queued is counted as failed and logged.
        """
        where = {
            (p, o): i for i, (p, o) in enumerate(zip(raw.partitions, raw.offsets, strict=True))
        }
        headers_of = getattr(raw, "headers", None)
        failed = truncated = 0
        for error in errors:
            i = where.get((error.partition, error.offset))
            if i is None or error.topic != raw.topic:
                continue
            source = f"{error.topic}/{error.partition}/{error.offset}"
            try:
                original = list(headers_of[i] or []) if headers_of is not None else []
                reason = [
                    ("livetables-error-reason", error.reason.encode()),
                    ("livetables-error-detail", error.detail[:200].encode("utf-8", "replace")),
                    ("livetables-source", source.encode()),
                    ("livetables-table", table.encode()),
                ]
                value, key, headers, cut = fit_copy(
                    raw.values[i], raw.keys[i], original, reason, self.max_message_bytes
                )
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    # The stub asks for a List of (str, str | bytes | None), which a list of
                    # (str, bytes) is not (List is invariant) though the client only reads it.
                    headers=headers,  # type: ignore[arg-type]
                    on_delivery=partial(self._delivered, table, topic, source),
                )
            except PRODUCE_ERRORS as exc:
                failed += 1
                self._log(
                    "dead-letter topic %s: cannot queue the record at %s: %s", topic, source, exc
                )
                continue
            if cut:
                truncated += 1
        if failed:
            self._on_outcome(table, "failed", failed)
        if truncated:
            self._on_outcome(table, "truncated", truncated)

    def _delivered(
        self, table: str, topic: str, source: str, err: KafkaError | None, _msg: Message
    ) -> None:
        if err is None:
            self._on_outcome(table, "sent", 1)
        else:
            self._on_outcome(table, "failed", 1)
            self._log(
                "dead-letter topic %s: the copy of the record at %s was not delivered: %s",
                topic,
                source,
                err.str(),
            )

    def _on_error(self, error: KafkaError) -> None:
        self._log("dead-letter producer: %s", error.str())

    def _log(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL_S:
            self._logged_at = now
            log.warning(message, *args)

    def _serve_reports(self) -> None:
        while not self._closing.is_set():
            try:
                self._producer.poll(0.5)
            except Exception as exc:  # a callback that raised: reports must keep flowing
                self._log("dead-letter producer: a delivery report failed: %r", exc)

    def close(self, timeout: float = 5.0) -> None:
        self._closing.set()
        self._reporter.join(timeout)
        try:
            remaining = self._producer.flush(timeout)
        except Exception as exc:
            log.warning("dead-letter producer: flush at shutdown failed: %r", exc)
            return
        if remaining:
            log.warning("dead-letter producer: %d record(s) not delivered at shutdown", remaining)
