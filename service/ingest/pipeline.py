"""One table's batch on its way in, top to bottom, on the table's consumer thread.

    consume     connectors/kafka.py      librdkafka hands over thousands of messages a call
    extract     connectors/extract.py    their values, keys, offsets... as one RawBatch
    oversize    TablePipeline.process    records over max_record_bytes set aside (bad records)
    decode      connectors/decoding.py   Arrow rows, removals, and bad records as data
    dead letter reporting.DeadLetters    bad records copied to the table's dead-letter topic
    report      reporting.BadRecordReport  records and bad records counted, bad ones logged
    hand over   applier.Applier          frozen DecodedBatch(es) onto the applier's queue
    apply       writer.TableWriter       one update()/remove() on the Perspective table
    replicate   service/replication.py   the same batch to every replica of the table
    mirror      service/snapshots/       (with snapshots:) into the table's Arrow copy

Up to the hand-over nothing raises: a decoder that raises instead of reporting
bad records as data (a bug, or an input no one foresaw) has its batch split in
halves until the record that makes it raise stands alone; that record is a bad
record (``decoder_error``) and every other record of the batch is decoded as
usual. Halves are decoded in order, so an indexed table still folds in Kafka
order. A clean batch costs exactly one decode.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from connectors.base import DecodedBatch, DecodeError, DecodeReason, RawBatch
from connectors.cputime import thread_clock
from connectors.deadletter import split_oversized
from connectors.decoding import BatchDecoder
from connectors.halves import split_until_isolated
from service.config import TableConfig
from service.ingest.reporting import BadRecordReport, DeadLetters
from service.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

DECODER_FAILURE_LOG_INTERVAL_S = 10.0


class TablePipeline:
    """Turns one table's raw batches into decoded batches ready to apply."""

    def __init__(
        self,
        name: str,
        table: TableConfig,
        decoder: BatchDecoder,
        dead_letters: DeadLetters,
        report: BadRecordReport,
    ) -> None:
        self.name = name
        self.decoder = decoder
        self.max_record_bytes = table.max_record_bytes
        # A table that keeps keys (as its index or as columns) counts them in a record's size.
        self.keeps_keys = decoder.spec.keeps_keys
        self.dead_letters = dead_letters
        self.report = report
        self._log = ThrottledLog(log, DECODER_FAILURE_LOG_INTERVAL_S)

    def process(self, raw: RawBatch) -> list[DecodedBatch]:
        """The batch decoded: one batch, or (after the decoder raised) several, in order."""
        if not len(raw):
            return [DecodedBatch(rows=None)]
        kept, oversized = split_oversized(raw, self.max_record_bytes, self.keeps_keys)
        batches = self._decode(kept) if len(kept) else [DecodedBatch(rows=None)]
        if oversized:
            first = batches[0]
            batches[0] = replace(
                first,
                errors=[*oversized, *first.errors],
                records=first.records + len(oversized),
            )
        clock = thread_clock()
        clock.lap(self.name, "decode")
        errors = [e for b in batches for e in b.errors]
        self.dead_letters.send(self.name, raw, errors)
        self.report.batch(self.name, len(raw), errors)
        clock.lap(self.name, "bookkeeping")
        return batches

    def _decode(self, raw: RawBatch) -> list[DecodedBatch]:
        """One decode; if the decoder raises, its batch in halves until the culprits stand alone."""
        batches: list[DecodedBatch] = []

        def attempt(start: int, stop: int) -> None:
            whole = start == 0 and stop == len(raw)
            batches.append(self.decoder.decode(raw if whole else raw.take(range(start, stop))))

        def isolated(i: int, exc: Exception) -> None:
            where = (raw.topic, raw.partitions[i], raw.offsets[i])
            self._log.warning(
                self.name,
                "table %s: the decoder raised on the record at %s[%d]@%d",
                self.name,
                *where,
            )
            log.debug("decoder failure", exc_info=exc)
            error = DecodeError(*where, DecodeReason.DECODER_ERROR, repr(exc)[:200])
            batches.append(DecodedBatch(rows=None, errors=[error], records=1))

        split_until_isolated(0, len(raw), attempt, isolated)
        return batches
