"""The deriver: one thread that keeps every derived table within its delay of its source.

A derived table is refreshed when its source has changed, at most once per
``refresh`` interval: a source updated every millisecond costs one refresh per
interval, and a quiet source that changes once is followed at once (the delay
bound holds either way: the change waits at most one interval, plus the refresh).
Tables are visited sources first, so a derived table of a derived table follows
within the sum of their intervals.

Readiness (``/readyz``): a derived table is ready once its source is ready and
a refresh that started after that has completed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from service.config import LivetablesConfig
from service.config.resolve import derivation_order
from service.derived.table import DerivedTable
from service.metrics import Metrics
from service.tables import TableHost
from service.throttled_log import ThrottledLog

if TYPE_CHECKING:  # the ingest package builds the deriver: no import back at run time
    from service.ingest.writer import TableWriter

log = logging.getLogger(__name__)

# With nothing to do, the thread still looks around this often (readiness of sources).
IDLE_WAIT_S = 0.5
FAILURE_LOG_INTERVAL_S = 10.0


class Progress(Protocol):
    """What /readyz, /api/tables and the metrics read of a table's progress."""

    @property
    def ready(self) -> bool: ...

    @property
    def assigned(self) -> bool: ...

    @property
    def connected(self) -> bool: ...

    def behind(self) -> dict: ...

    def lag(self) -> dict: ...


class DerivedProgress:
    """A derived table's progress: its source's, until its own first refresh after that."""

    def __init__(self, source: Progress) -> None:
        self.source = source
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    def mark_ready(self) -> None:
        self._ready = True

    @property
    def assigned(self) -> bool:
        return self.source.assigned

    @property
    def connected(self) -> bool:
        return self.source.connected

    def behind(self) -> dict:
        """What its source still has to apply before the start-up end offsets."""
        return self.source.behind()

    def lag(self) -> dict:
        return {}  # it reads no partition: its delay is its source's lag plus its interval


class Deriver:
    """Creates the derived tables' views and refreshes the tables on a thread of its own."""

    def __init__(
        self,
        config: LivetablesConfig,
        host: TableHost,
        writer: TableWriter,
        metrics: Metrics,
        progress: dict[str, Progress],
    ) -> None:
        self.metrics = metrics
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._log = ThrottledLog(log, FAILURE_LOG_INTERVAL_S)
        self.tables: list[DerivedTable] = []
        self.progress: dict[str, DerivedProgress] = {}
        known: dict[str, Progress] = dict(progress)
        for name in derivation_order(config.tables):
            table = config.tables[name]
            assert table.from_ is not None
            source_schema = config.tables[table.from_].columns
            self.tables.append(
                DerivedTable(name, table, source_schema, host, writer, metrics, self._wake.set)
            )
            self.progress[name] = DerivedProgress(known[table.from_])
            known[name] = self.progress[name]
            metrics.init_derived(name)
        self._ready_pending: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="deriver", daemon=True)
        self._failure: BaseException | None = None

    def start(self) -> None:
        if self.tables:
            self._thread.start()

    def stop(self) -> None:
        """End the thread, then delete the views (the tables go after them)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for table in reversed(self.tables):
            table.close()

    def problem(self) -> str | None:
        """What /healthz reports about this thread, if anything."""
        started = self._thread.ident is not None
        if started and not self._thread.is_alive() and not self._stop.is_set():
            return f"deriver thread stopped: {self._failure!r}"
        return None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()
                wait = self._pass()
                self._wake.wait(wait)
        except BaseException as exc:  # not ours to survive: the thread ends, /healthz says so
            self._failure = exc
            log.exception("deriver thread stopped")

    def _pass(self) -> float:
        """Refresh every table that is due; seconds until the next one is."""
        wait = IDLE_WAIT_S
        for table in self.tables:
            progress = self.progress[table.name]
            waiting = not progress.ready and table.name not in self._ready_pending
            if waiting and progress.source.ready:
                self._ready_pending.add(table.name)
                table.changed.set()  # read the caught-up source, however quiet it is now
            if not table.changed.is_set():
                continue
            due = table.last_refresh + table.interval - time.monotonic()
            if due > 0:
                wait = min(wait, due)
                continue
            readying = table.name in self._ready_pending
            try:
                table.refresh()
            except Exception as exc:
                self.metrics.derived_refresh_failures.labels(table.name).inc()
                self._log.warning(
                    table.name, "derived table %s: refresh failed: %r", table.name, exc
                )
                log.debug("refresh failure", exc_info=exc)
                table.changed.set()  # try again after the interval
                wait = min(wait, table.interval)
                continue
            if readying:
                progress.mark_ready()
                self._ready_pending.discard(table.name)
        return wait
