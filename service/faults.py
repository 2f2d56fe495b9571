"""Record faults on the ingest path: oversized records, decoders that raise, dead letters.

``RecordFaults.decode`` wraps a table's batch decoder so that no record can
stop the table's consumer thread:

* oversized records are cut out before decoding (bad records, reason
  ``oversized``);
* a decoder that raises instead of reporting bad records as data (a bug, or an
  input no one foresaw) has its batch split in halves until the record that
  makes it raise stands alone; that record is a bad record (reason
  ``decoder_error``) and every other record of the batch is decoded as usual.
  Halves are decoded in order, so an indexed table still folds in Kafka order;
* every bad record is copied to the table's ``dead_letter_topic`` when it has
  one, and a copy that fails is counted, never raised.

A clean batch costs exactly one decode: the splitting only happens on failure.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from connectors.base import DecodedBatch, DecodeError, RawBatch
from connectors.deadletter import DeadLetterSink, split_oversized
from service.config import LivetablesConfig
from service.metrics import Metrics

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0


class _Decoder(Protocol):
    def decode(self, raw: RawBatch) -> DecodedBatch: ...


class RecordFaults:
    def __init__(self, config: LivetablesConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.sink: DeadLetterSink | None = None
        self._logged_at: dict[str, float] = {}
        if any(t.dead_letter_topic for t in config.tables.values()):
            self.sink = DeadLetterSink(
                config.kafka.bootstrap_servers, dict(config.kafka.client), self._count_outcome
            )
        for name, table in config.tables.items():
            if table.dead_letter_topic:
                for outcome in ("sent", "failed"):
                    metrics.dead_letters.labels(name, outcome)
                metrics.dead_letters_truncated.labels(name)

    def _count_outcome(self, table: str, outcome: str, count: int) -> None:
        if outcome == "truncated":
            self.metrics.dead_letters_truncated.labels(table).inc(count)
        else:
            self.metrics.dead_letters.labels(table, outcome).inc(count)

    def decode(self, name: str, decoder: _Decoder, raw: RawBatch) -> list[DecodedBatch]:
        """The batch decoded, as one or (after a decoder raised) several batches in order."""
        table = self.config.tables[name]
        keeps_keys = table.index is not None or table.key is not None
        kept, oversized = split_oversized(raw, table.max_record_bytes, count_keys=keeps_keys)
        if len(kept):
            batches = self._decode_isolating(name, decoder, kept)
        else:
            batches = [DecodedBatch(rows=None)]
        if oversized:
            batches[0].errors = oversized + batches[0].errors
        batches[0].records += len(raw) - len(kept)
        errors = [e for b in batches for e in b.errors]
        if errors and self.sink is not None and table.dead_letter_topic:
            try:
                self.sink.send(name, table.dead_letter_topic, raw, errors)
            except Exception as exc:  # the sink never raises; if it does, count, never stop
                self.metrics.dead_letters.labels(name, "failed").inc(len(errors))
                self._log(name, "table %s: dead-letter copies failed: %r", name, exc)
        return batches

    def _decode_isolating(self, name: str, decoder: _Decoder, raw: RawBatch) -> list[DecodedBatch]:
        try:
            return [decoder.decode(raw)]
        except Exception as exc:
            if len(raw) == 1:
                where = f"{raw.topic}[{raw.partitions[0]}]@{raw.offsets[0]}"
                self._log(name, "table %s: the decoder raised on the record at %s", name, where)
                log.debug("decoder failure", exc_info=exc)
                error = DecodeError(
                    raw.topic, raw.partitions[0], raw.offsets[0], "decoder_error", repr(exc)[:200]
                )
                return [DecodedBatch(rows=None, errors=[error], records=1)]
        middle = len(raw) // 2
        first = self._decode_isolating(name, decoder, raw.take(range(middle)))
        second = self._decode_isolating(name, decoder, raw.take(range(middle, len(raw))))
        return first + second

    def _log(self, name: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged_at.get(name, -LOG_INTERVAL_S) >= LOG_INTERVAL_S:
            self._logged_at[name] = now
            log.warning(message, *args)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
