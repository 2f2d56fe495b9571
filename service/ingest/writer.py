"""The one place hosted tables change: a decoded batch applied, then handed to replication.

Runs on the applier thread, and, for a table whose consumer has not started yet,
on the thread that restores it from a snapshot (:meth:`TableWriter.load`). The
apply and the hand-over happen under the replicator's lock of the table, so a
replica that subscribes meanwhile gets a snapshot that holds all of a batch or
none of it, and then every later batch.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa

from connectors.base import DecodedBatch, DecodeReason
from service.metrics import Metrics
from service.replication import Replicator
from service.tables import TableHost

log = logging.getLogger(__name__)


class TableWriter:
    """Applies batches to the hosted tables and feeds replication; counts what it did."""

    def __init__(self, host: TableHost, replicator: Replicator, metrics: Metrics) -> None:
        self.host = host
        self.replicator = replicator
        self.metrics = metrics

    def write(self, name: str, batch: DecodedBatch) -> bool:
        """Apply ``batch`` to table ``name`` and publish it; False if the engine refused it.

        A batch the engine refuses must not stop the table: its rows are counted as
        ``update_failed`` and logged, and the next batch is applied as usual.
        """
        started = time.perf_counter()
        try:
            with self.replicator.applying(name):
                self.host.apply(name, batch)
                self.replicator.publish(name, batch)
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
