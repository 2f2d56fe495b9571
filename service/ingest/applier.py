"""The applier: one thread taking decoded batches off a bounded queue and writing them.

Consumer threads decode (pyarrow releases the GIL while it parses) while this
thread applies, so the two stages overlap, which on two cores nearly doubles
throughput over doing both on one thread; nothing runs on the web server's
IOLoop. The queue is bounded: a consumer waits when the applier is behind.

When the applier falls behind, the batches waiting for an append or
rolling-window table are concatenated into one update (conflation): fewer,
larger updates are cheaper than many small ones (up to ~200k rows, measured).
A rolling-window table keeps only its last ``limit`` rows, so the batches
waiting for it are merged without that cap and cut to their last ``limit``
rows: rows the table would evict at once are never applied, nor replicated.

If anything fails on this thread (other than an update the engine refuses,
which the writer counts), it restarts with backoff
(``livetables_applier_restarts_total``) and applies the batches it had taken
but not yet applied, so none is lost and none applied twice. While it is down,
``/healthz`` names it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from connectors.backoff import Backoff
from connectors.base import DecodedBatch
from connectors.cputime import thread_clock
from connectors.source import Partition
from connectors.threadname import name_os_thread
from service.ingest.progress import TableProgress
from service.ingest.writer import TableWriter
from service.metrics import Metrics

log = logging.getLogger(__name__)

QUEUE_BATCHES = 64
CONFLATE_MAX_ROWS = 200_000


AppliedHook = Callable[[str, DecodedBatch | None, dict[Partition, int]], None]


@dataclass(frozen=True)
class Work:
    """A decoded batch of one table, and the offsets it completes once applied."""

    table: str
    batch: DecodedBatch
    positions: dict[Partition, int]


class Applier:
    """Applies every table's batches, in the order each consumer handed them over."""

    def __init__(
        self,
        writer: TableWriter,
        progress: dict[str, TableProgress],
        metrics: Metrics,
        append_tables: frozenset[str],
        limits: dict[str, int] | None = None,
        on_applied: AppliedHook | None = None,
    ) -> None:
        self.writer = writer
        self.progress = progress
        self.metrics = metrics
        self.append_tables = append_tables  # tables whose consecutive batches may be merged
        self.limits = dict(limits or {})  # rolling-window tables: table -> limit
        # Told of every batch after it is applied (None: the engine refused it), with the
        # offsets it completes: how the snapshots' mirrors follow the tables.
        self.on_applied = on_applied
        self._queue: queue.Queue[Work | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="applier", daemon=True)
        # Set while the thread is down after a failure, until it runs again.
        self._failure: BaseException | None = None
        self._backoff = Backoff()
        # Batches taken off the queue but not applied yet: kept across a restart.
        self._carry: deque[Work] = deque()
        self._draining = False

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close_intake(self) -> None:
        """Hand-overs from now on return at once, so consumer threads can stop."""
        self._stop.set()

    def stop(self) -> None:
        """Apply what was queued already, then end the thread."""
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(10)

    def problem(self) -> str | None:
        """What /healthz reports about this thread, if anything."""
        failure = self._failure
        if not self._thread.is_alive():
            return f"applier thread stopped: {failure!r}"
        if failure is not None:
            return f"applier thread restarting after: {failure!r}"
        return None

    # -- the consumer threads' side -----------------------------------------------------

    def hand_over(
        self, table: str, batches: list[DecodedBatch], positions: dict[Partition, int]
    ) -> None:
        """Queue a table's batches; the offsets move once the last of them is applied."""
        for batch in batches[:-1]:
            self._put(Work(table, batch, {}))
        self._put(Work(table, batches[-1], positions))

    def _put(self, work: Work) -> None:
        # Blocking put: backpressure on the consumer when the applier is behind,
        # but wake up to notice a stop.
        while not self._stop.is_set():
            try:
                self._queue.put(work, timeout=0.5)
                return
            except queue.Full:
                continue

    # -- the applier thread -----------------------------------------------------------

    def _run(self) -> None:
        """Apply batches until stopped; after a failure, restart with backoff."""
        name_os_thread("applier")
        while True:
            started = time.monotonic()
            try:
                self._drain()
                return
            except Exception as exc:
                self._failure = exc
                self.metrics.applier_restarts.inc()
                delay = self._backoff.delay(time.monotonic() - started)
                log.exception(
                    "applier thread failed; restarting in %.1f s with %d batch(es) still to apply",
                    delay,
                    len(self._carry),
                )
                if self._stop.wait(delay) and not self._carry and not self._draining:
                    return
                self._failure = None
            except BaseException as exc:  # not ours to survive: the thread ends, /healthz says so
                self._failure = exc
                log.exception("applier thread stopped")
                return

    def _drain(self) -> None:
        """Take batches off the queue and apply them, conflated, until the stop sentinel.

        A batch is taken off ``_carry`` just before it is applied: if applying it
        fails in a way the writer does not absorb, it is not applied again (it may
        have reached the table), and the batches after it are applied on restart.
        """
        while True:
            while self._carry:
                self._apply(self._carry.popleft())
            if self._draining:
                return
            work = self._queue.get()
            if work is None:
                return
            clock = thread_clock()
            clock.start()  # waiting for work is no stage's
            pending = [work]
            while len(pending) < QUEUE_BATCHES:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._draining = True  # apply what was taken, then stop
                    break
                pending.append(more)
            self._carry.extend(self._conflated(pending))
            clock.lap(work.table, "bookkeeping")

    def _apply(self, work: Work) -> None:
        batch = work.batch
        applied = False
        if batch.row_count or batch.removal_count:
            applied = self.writer.write(work.table, batch)  # laps apply, replicate, bookkeeping
        if self.on_applied is not None:
            self.on_applied(work.table, batch if applied else None, work.positions)
        if batch.records:
            self.metrics.batch_rows.labels(work.table).observe(batch.records)
        self.progress[work.table].on_applied(work.positions)
        thread_clock().lap(work.table, "bookkeeping")

    def _conflated(self, pending: list[Work]) -> list[Work]:
        try:
            return conflate(pending, self.append_tables, self.limits)
        except Exception:  # merging is an optimisation: apply them one by one instead
            log.exception("conflating %d batches failed; applying them one by one", len(pending))
            return pending


def conflate(
    pending: list[Work], append_tables: frozenset[str], limits: dict[str, int] | None = None
) -> list[Work]:
    """Consecutive batches of the same append or rolling-window table merged into one."""
    limits = limits or {}
    out: list[Work] = []
    for work in pending:
        previous = out[-1] if out else None
        limit = limits.get(work.table)
        if (
            previous is not None
            and previous.table == work.table
            and work.table in append_tables
            and (
                limit is not None
                or previous.batch.row_count + work.batch.row_count <= CONFLATE_MAX_ROWS
            )
        ):
            out[-1] = _merge(previous, work, limit)
        else:
            out.append(work)
    return out


def _merge(a: Work, b: Work, limit: int | None = None) -> Work:
    """Two batches as one; with a ``limit``, only the last ``limit`` rows are kept."""
    rows = [r for r in (a.batch.rows, b.batch.rows) if r is not None]
    stamps = [s for s in (a.batch.timestamps_ms, b.batch.timestamps_ms) if s is not None]
    positions = dict(a.positions)
    for tp, offset in b.positions.items():
        positions[tp] = max(offset, positions.get(tp, -1))
    merged_rows = pa.concat_tables(rows) if len(rows) > 1 else (rows[0] if rows else None)
    if limit is not None and merged_rows is not None and merged_rows.num_rows > limit:
        merged_rows = merged_rows.slice(merged_rows.num_rows - limit)
    merged = DecodedBatch(
        rows=merged_rows,
        records=a.batch.records + b.batch.records,
        timestamps_ms=pa.concat_arrays(stamps)
        if len(stamps) > 1
        else (stamps[0] if stamps else None),
    )
    return Work(a.table, merged, positions)
