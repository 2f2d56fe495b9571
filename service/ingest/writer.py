"""The one place hosted tables change: a batch applied, then handed to replication.

Runs on the applier thread for batches from Kafka, on the deriver thread for
derived tables, on the expiry thread for rows that age out and, for a table
whose consumer has not started yet, on the thread that restores it from a
snapshot (:meth:`TableWriter.load`). The apply and the hand-over happen under
the replicator's lock of the table, so a replica that subscribes meanwhile
gets a snapshot that holds all of a batch or none of it, and then every later
batch. Tables with ``retention:`` have their batches prepared
(``service/retention/book.py``) under the same lock, so an expiry decided on
one thread cannot remove a row another thread has just refreshed.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa

from connectors.base import DecodedBatch, DecodeReason
from connectors.cputime import thread_clock
from service.metrics import Metrics
from service.replication import Replicator
from service.retention.book import RetentionBook
from service.tables import TableHost

log = logging.getLogger(__name__)


class TableWriter:
    """Applies batches to the hosted tables and feeds replication; counts what it did."""

    def __init__(
        self,
        host: TableHost,
        replicator: Replicator,
        metrics: Metrics,
        retention: RetentionBook | None = None,
    ) -> None:
        self.host = host
        self.replicator = replicator
        self.metrics = metrics
        self.retention = retention if retention is not None else RetentionBook(host.config)

    def write(self, name: str, batch: DecodedBatch) -> bool:
        """Apply ``batch`` to table ``name`` and publish it; False if the engine refused it.

        A batch the engine refuses must not stop the table: its rows are counted as
        ``update_failed`` and logged, and the next batch is applied as usual.
        """
        started = time.perf_counter()
        clock = thread_clock()
        clock.lap(name, "bookkeeping")
        try:
            with self.replicator.applying(name):
                batch = self.retention.prepare(name, batch)
                self.host.apply(name, batch)
                clock.lap(name, "apply")
                self.replicator.publish(name, batch)
                clock.lap(name, "replicate")
        except Exception:
            log.exception("table %s: update of %d rows failed", name, batch.row_count)
            self.metrics.decode_errors.labels(name, DecodeReason.UPDATE_FAILED).inc(batch.row_count)
            return False
        applied_at = time.time()
        self.metrics.update_duration.labels(name).observe(time.perf_counter() - started)
        if batch.row_count:
            self.metrics.rows_applied.labels(name, "update").inc(batch.row_count)
        if batch.removal_count:
            self.metrics.rows_applied.labels(name, "remove").inc(batch.removal_count)
        if batch.timestamps_ms is not None:
            self.metrics.observe_latency(name, batch.timestamps_ms, applied_at)
        return True

    def expire(self, name: str) -> int:
        """Remove the rows of table ``name`` that have aged out; how many were removed."""
        started = time.perf_counter()
        with self.replicator.applying(name):
            keys = self.retention.expire(name)
            if keys is None:
                return 0
            batch = DecodedBatch(rows=None, removals=keys)
            self.host.apply(name, batch)
            self.replicator.publish(name, batch)
        self.metrics.update_duration.labels(name).observe(time.perf_counter() - started)
        self.metrics.rows_applied.labels(name, "remove").inc(len(keys))
        self.metrics.rows_expired.labels(name).inc(len(keys))
        return len(keys)

    def load(self, name: str, body: bytes, rows: pa.Table) -> None:
        """Fill the empty table ``name`` from a snapshot in one update, and publish the rows.

        Unlike :meth:`write`, a failure raises: the caller replays the table instead.
        """
        started = time.perf_counter()
        with self.replicator.applying(name):
            self.host.load(name, body, rows)
            self.replicator.publish(name, DecodedBatch(rows=rows))
        self.metrics.update_duration.labels(name).observe(time.perf_counter() - started)
        if rows.num_rows:
            self.metrics.rows_applied.labels(name, "update").inc(rows.num_rows)

    def clear(self, name: str) -> None:
        """Empty table ``name`` (a load that failed half-way) before it is replayed."""
        with self.replicator.applying(name):
            self.host.clear(name)
