"""The expiry thread: every half second, the rows of each table that have aged out are removed.

Off the IOLoop and off the applier: a tick asks the writer to expire each table
with ``retention:``; the writer decides and removes under the table's lock
(``service/ingest/writer.py``), in one ``remove()`` per table and tick, never one
per row. A tick that fails for one table is logged and counted, and the next
tick tries again; the thread itself only ends when the service stops.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from service.metrics import Metrics
from service.throttled_log import ThrottledLog

if TYPE_CHECKING:  # the ingest package builds the expirer: no import back at run time
    from service.ingest.writer import TableWriter

log = logging.getLogger(__name__)

# Rows leave within this long of passing their window (plus the remove itself).
EXPIRY_INTERVAL_S = 0.5
FAILURE_LOG_INTERVAL_S = 10.0


class Expirer:
    """Removes aged-out rows of the tables with retention, on a thread of its own."""

    def __init__(
        self,
        writer: TableWriter,
        tables: list[str],
        metrics: Metrics,
        interval: float = EXPIRY_INTERVAL_S,
    ) -> None:
        self.writer = writer
        self.tables = tables
        self.metrics = metrics
        self.interval = interval
        self._stop = threading.Event()
        self._log = ThrottledLog(log, FAILURE_LOG_INTERVAL_S)
        self._thread = threading.Thread(target=self._run, name="expirer", daemon=True)
        self._failure: BaseException | None = None
        for name in tables:
            metrics.init_retention(name)

    def start(self) -> None:
        if self.tables:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def problem(self) -> str | None:
        """What /healthz reports about this thread, if anything."""
        started = self._thread.ident is not None
        if started and not self._thread.is_alive() and not self._stop.is_set():
            return f"expiry thread stopped: {self._failure!r}"
        return None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.tick()
        except BaseException as exc:  # not ours to survive: the thread ends, /healthz says so
            self._failure = exc
            log.exception("expiry thread stopped")

    def tick(self) -> int:
        """Expire every table once; rows removed in all."""
        removed = 0
        for name in self.tables:
            try:
                removed += self.writer.expire(name)
            except Exception as exc:
                self.metrics.expiry_failures.labels(name).inc()
                self._log.warning(name, "table %s: expiring rows failed: %r", name, exc)
                log.debug("expiry failure", exc_info=exc)
        return removed
