"""What becomes of bad records: counted by reason, logged without flooding, dead-lettered.

Runs on the consumer threads. Nothing here may cost a batch its hand-over: a
failure to count, log or copy is itself logged (rate-limited) and forgotten.
"""

from __future__ import annotations

import logging

from connectors.base import DecodeError, RawBatch
from connectors.deadletter import DeadLetterSink
from service.config import LivetablesConfig
from service.metrics import Metrics
from service.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

ERROR_LOG_INTERVAL_S = 5.0
FAILURE_LOG_INTERVAL_S = 10.0
LOGGED_PER_BATCH = 10


class BadRecordReport:
    """Counts each batch's records and bad records, and logs the bad ones with where they are."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._log = ThrottledLog(log, ERROR_LOG_INTERVAL_S)
        self._suppressed: dict[str, int] = {}

    def batch(self, table: str, records: int, errors: list[DecodeError]) -> None:
        """Count a batch of ``records`` with its ``errors``; never raises."""
        try:
            if records:
                self.metrics.records_consumed.labels(table).inc(records)
            if errors:
                self._bad_records(table, errors)
        except Exception:  # counting and logging must never cost the batch itself
            log.exception("table %s: reporting a batch failed", table)

    def _bad_records(self, table: str, errors: list[DecodeError]) -> None:
        counts: dict[str, int] = {}
        for error in errors:
            counts[error.reason] = counts.get(error.reason, 0) + 1
        for reason, count in counts.items():
            self.metrics.decode_errors.labels(table, reason).inc(count)
        # Log each bad record with its position, but never flood the log.
        if not self._log.allowed(table):
            self._suppressed[table] = self._suppressed.get(table, 0) + len(errors)
            return
        suppressed = self._suppressed.pop(table, 0)
        for error in errors[:LOGGED_PER_BATCH]:
            log.warning(
                "table %s: skipped record at %s[%d]@%d: %s%s",
                table,
                error.topic,
                error.partition,
                error.offset,
                error.reason,
                f" ({error.detail})" if error.detail else "",
            )
        more = len(errors) - LOGGED_PER_BATCH + suppressed
        if more > 0:
            log.warning(
                "table %s: %d more bad records skipped (see decode_errors_total)", table, more
            )


class DeadLetters:
    """Copies of bad records to each table's ``dead_letter_topic``, through one producer.

    Every outcome is counted (``livetables_dead_letter_records_total``); a copy
    that fails is counted and logged, never raised or waited for.
    """

    def __init__(self, config: LivetablesConfig, metrics: Metrics) -> None:
        self.metrics = metrics
        self.topics = {
            name: table.dead_letter_topic
            for name, table in config.tables.items()
            if table.dead_letter_topic
        }
        self._log = ThrottledLog(log, FAILURE_LOG_INTERVAL_S)
        self.sink: DeadLetterSink | None = None
        if self.topics:
            self.sink = DeadLetterSink(
                config.kafka.bootstrap_servers, dict(config.kafka.client), self._count
            )
        for name in self.topics:
            for outcome in ("sent", "failed"):
                metrics.dead_letters.labels(name, outcome)
            metrics.dead_letters_truncated.labels(name)

    def send(self, table: str, raw: RawBatch, errors: list[DecodeError]) -> None:
        """Copy the records behind ``errors`` to the table's dead-letter topic, if it has one."""
        topic = self.topics.get(table)
        if topic is None or self.sink is None or not errors:
            return
        try:
            self.sink.send(table, topic, raw, errors)
        except Exception as exc:  # the sink never raises; if it does, count, never stop
            self.metrics.dead_letters.labels(table, "failed").inc(len(errors))
            self._log.warning(table, "table %s: dead-letter copies failed: %r", table, exc)

    def _count(self, table: str, outcome: str, count: int) -> None:
        if outcome == "truncated":
            self.metrics.dead_letters_truncated.labels(table).inc(count)
        else:
            self.metrics.dead_letters.labels(table, outcome).inc(count)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
