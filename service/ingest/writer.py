"""The one place hosted tables change: a decoded batch applied, then handed to replication.

Runs on the applier thread only. The apply and the hand-over happen under the
replicator's lock of the table, so a replica that subscribes meanwhile gets a
snapshot that holds all of a batch or none of it, and then every later batch.
"""

from __future__ import annotations

import logging
import time

from connectors.base import DecodedBatch, DecodeReason
from connectors.cputime import thread_clock
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

    def write(self, name: str, batch: DecodedBatch) -> None:
        """Apply ``batch`` to table ``name`` and publish it; an engine refusal is counted.

        A batch the engine refuses must not stop the table: its rows are counted as
        ``update_failed`` and logged, and the next batch is applied as usual.
        """
        started = time.perf_counter()
        clock = thread_clock()
        clock.lap(name, "bookkeeping")
        try:
            with self.replicator.applying(name):
                self.host.apply(name, batch)
                clock.lap(name, "apply")
                self.replicator.publish(name, batch)
                clock.lap(name, "replicate")
        except Exception:
            log.exception("table %s: update of %d rows failed", name, batch.row_count)
            self.metrics.decode_errors.labels(name, DecodeReason.UPDATE_FAILED).inc(batch.row_count)
            return
        applied_at = time.time()
        self.metrics.update_duration.labels(name).observe(time.perf_counter() - started)
        if batch.row_count:
            self.metrics.rows_applied.labels(name, "update").inc(batch.row_count)
        if batch.removal_count:
            self.metrics.rows_applied.labels(name, "remove").inc(batch.removal_count)
        if batch.timestamps_ms is not None:
            self.metrics.observe_latency(name, batch.timestamps_ms, applied_at)
