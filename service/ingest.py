"""The ingest pipeline: Kafka sources, decoding, and one thread applying updates.

Each table has a consumer thread that consumes and decodes whole batches
(pyarrow releases the GIL while it parses), and a single applier thread takes
decoded batches off a bounded queue and applies them to the Perspective
tables. The two stages overlap, which on two cores nearly doubles throughput
over doing both on one thread, and nothing runs on the web server's IOLoop.

When the applier falls behind, the batches waiting for an append or
rolling-window table are concatenated into one update (conflation): fewer,
larger updates are cheaper than many small ones.

No record and no bug may leave a table silently dead. Decoding, dead letters
and error reporting on the consumer threads count what fails and go on; a
consumer that fails anyway restarts by itself (``connectors/kafka.py``). The
applier counts a batch the engine refuses (``update_failed``) and goes on; if
anything else fails on its thread, it restarts with backoff
(``livetables_applier_restarts_total``) and applies the batches it had taken
but not yet applied, so none is lost and none applied twice. While a thread is
down, ``/healthz`` names it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

import pyarrow as pa

from connectors.backoff import Backoff
from connectors.base import DecodedBatch, RawBatch
from connectors.decoding import BatchDecoder
from connectors.kafka import KafkaSource, SourceCallbacks, StartPolicy, consumer_properties
from service.config import LivetablesConfig, lookback
from service.faults import RecordFaults
from service.metrics import Metrics
from service.progress import Partition, TableProgress
from service.replication import Replicator
from service.tables import TableHost

log = logging.getLogger(__name__)

QUEUE_BATCHES = 64
CONFLATE_MAX_ROWS = 200_000
ERROR_LOG_INTERVAL_S = 5.0


@dataclass
class _Work:
    table: str
    batch: DecodedBatch
    positions: dict[Partition, int]


class Ingestor:
    """Runs every table's source and the applier until stopped."""

    def __init__(
        self,
        config: LivetablesConfig,
        host: TableHost,
        metrics: Metrics,
        replicator: Replicator | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.metrics = metrics
        self.replicator = replicator or Replicator(host)
        self.progress = {name: TableProgress(name) for name in config.tables}
        self._queue: queue.Queue[_Work | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._stop = threading.Event()
        self._applier = threading.Thread(target=self._apply_loop, name="applier", daemon=True)
        # Set while the applier is down after a failure, until it runs again.
        self._applier_failure: BaseException | None = None
        self._applier_backoff = Backoff()
        # Batches taken off the queue but not applied yet: kept across an applier restart.
        self._carry: deque[_Work] = deque()
        self._draining = False
        self._error_log_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.faults = RecordFaults(config, metrics)
        self.sources = [self._make_source(name) for name in config.tables]

    def _make_source(self, name: str) -> KafkaSource:
        table = self.config.tables[name]
        policy = StartPolicy.parse(table.start, lookback(table.start))
        decoder = BatchDecoder(name, table, self.config.kafka.schema_registry)
        progress = self.progress[name]
        metrics = self.metrics

        def on_batch(raw: RawBatch, positions: dict[Partition, int]) -> None:
            # Oversized records cut out, a raising decoder isolated, bad records copied to
            # a dead-letter topic: service/faults.py. Nothing here raises before the hand-over.
            if len(raw):
                batches = self.faults.decode(name, decoder, raw)
            else:
                batches = [DecodedBatch(rows=None)]
            try:
                if len(raw):
                    metrics.records_consumed.labels(name).inc(len(raw))
                for batch in batches:
                    self._report_errors(name, batch)
            except Exception:  # counting and logging must never cost the batch itself
                log.exception("table %s: reporting a batch failed", name)
            # Earlier pieces carry no positions: progress moves once the last one is applied.
            for batch in batches[:-1]:
                self._put(_Work(name, batch, {}))
            self._put(_Work(name, batches[-1], positions))

        def on_restart(_failure: BaseException) -> None:
            metrics.consumer_restarts.labels(name).inc()

        def on_connected(connected: bool) -> None:
            progress.connected = connected
            metrics.kafka_connected.labels(name).set(1 if connected else 0)

        callbacks = SourceCallbacks(
            on_batch=on_batch,
            on_assigned=progress.on_assigned,
            on_watermarks=progress.on_watermarks,
            on_connected=on_connected,
            on_restart=on_restart,
        )
        properties = consumer_properties(
            self.config.kafka.bootstrap_servers, dict(self.config.kafka.client), policy, name
        )
        metrics.init_table(name)
        return KafkaSource(
            name, table.topic_list, properties, policy, callbacks, headers=bool(table.headers)
        )

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        self._applier.start()
        for source in self.sources:
            source.start()

    def stop(self) -> None:
        self._stop.set()
        for source in self.sources:
            source.stop()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._applier.join(10)
        self.faults.close()

    @property
    def healthy(self) -> bool:
        """Every thread that should be running is, and none is down restarting."""
        return not self.problems()

    def problems(self) -> list[str]:
        """What /healthz reports: each thread that is dead, or down until its restart."""
        out = []
        applier_failure = self._applier_failure
        if not self._applier.is_alive():
            out.append(f"applier thread stopped: {applier_failure!r}")
        elif applier_failure is not None:
            out.append(f"applier thread restarting after: {applier_failure!r}")
        for source in self.sources:
            failure = source.failure
            if not source.alive:
                out.append(f"table {source.name}: consumer thread stopped: {failure!r}")
            elif failure is not None:
                out.append(
                    f"table {source.name}: consumer restarting (restart {source.restarts}) "
                    f"after: {failure!r}"
                )
        return out

    @property
    def ready(self) -> bool:
        return all(p.ready for p in self.progress.values())

    # -- consumer threads -------------------------------------------------------

    def _put(self, work: _Work) -> None:
        # Blocking put: backpressure on the consumer when the applier is behind,
        # but wake up to notice a stop.
        while not self._stop.is_set():
            try:
                self._queue.put(work, timeout=0.5)
                return
            except queue.Full:
                continue

    def _report_errors(self, name: str, batch: DecodedBatch) -> None:
        if not batch.errors:
            return
        counts: dict[str, int] = {}
        for error in batch.errors:
            counts[error.reason] = counts.get(error.reason, 0) + 1
        for reason, count in counts.items():
            self.metrics.decode_errors.labels(name, reason).inc(count)
        # Log each bad record with its position, but never flood the log.
        now = time.monotonic()
        if now - self._error_log_at.get(name, 0.0) < ERROR_LOG_INTERVAL_S:
            self._suppressed[name] = self._suppressed.get(name, 0) + len(batch.errors)
            return
        self._error_log_at[name] = now
        suppressed = self._suppressed.pop(name, 0)
        for error in batch.errors[:10]:
            log.warning(
                "table %s: skipped record at %s[%d]@%d: %s%s",
                name,
                error.topic,
                error.partition,
                error.offset,
                error.reason,
                f" ({error.detail})" if error.detail else "",
            )
        more = len(batch.errors) - 10 + suppressed
        if more > 0:
            log.warning(
                "table %s: %d more bad records skipped (see decode_errors_total)", name, more
            )

    # -- the applier --------------------------------------------------------------

    def _apply_loop(self) -> None:
        """Apply batches until stopped; after a failure, restart with backoff."""
        while True:
            started = time.monotonic()
            try:
                self._drain()
                return
            except Exception as exc:
                self._applier_failure = exc
                self.metrics.applier_restarts.inc()
                delay = self._applier_backoff.delay(time.monotonic() - started)
                log.exception(
                    "applier thread failed; restarting in %.1f s with %d batch(es) still to apply",
                    delay,
                    len(self._carry),
                )
                if self._stop.wait(delay) and not self._carry and not self._draining:
                    return
                self._applier_failure = None
            except BaseException as exc:  # not ours to survive: the thread ends, /healthz says so
                self._applier_failure = exc
                log.exception("applier thread stopped")
                return

    def _drain(self) -> None:
        """Take batches off the queue and apply them, conflated, until the stop sentinel.

        A batch is taken off ``_carry`` just before it is applied: if applying it
        fails in a way ``_apply`` does not absorb, it is not applied again (it may
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

    def _conflated(self, pending: list[_Work]) -> list[_Work]:
        try:
            return _conflate(pending, self.config)
        except Exception:  # merging is an optimisation: apply them one by one instead
            log.exception("conflating %d batches failed; applying them one by one", len(pending))
            return pending

    def _apply(self, work: _Work) -> None:
        name, batch = work.table, work.batch
        if batch.row_count or batch.removal_count:
            started = time.perf_counter()
            try:
                self.replicator.applying(name, lambda: self.host.apply(name, batch), batch)
            except Exception:
                # An update the engine refuses must not stop the table: log and go on.
                log.exception("table %s: update of %d rows failed", name, batch.row_count)
                self.metrics.decode_errors.labels(name, "update_failed").inc(batch.row_count)
            else:
                applied_at = time.time()
                self.metrics.update_duration.labels(name).observe(time.perf_counter() - started)
                if batch.row_count:
                    self.metrics.rows_applied.labels(name, "update").inc(batch.row_count)
                if batch.removal_count:
                    self.metrics.rows_applied.labels(name, "remove").inc(batch.removal_count)
                if batch.timestamps_ms is not None:
                    self.metrics.observe_latency(name, batch.timestamps_ms, applied_at)
                self.metrics.table_rows.labels(name).set(self.host.size(name))
        if batch.records:
            self.metrics.batch_rows.labels(name).observe(batch.records)
        progress = self.progress[name]
        progress.on_applied(work.positions)
        self.metrics.table_ready.labels(name).set(1 if progress.ready else 0)
        for (topic, partition), lag in progress.lag().items():
            self.metrics.consumer_lag.labels(name, topic, str(partition)).set(lag)


def _conflate(pending: list[_Work], config: LivetablesConfig) -> list[_Work]:
    """Merge consecutive append/limit batches of the same table into one update."""
    out: list[_Work] = []
    for work in pending:
        previous = out[-1] if out else None
        if (
            previous is not None
            and previous.table == work.table
            and config.tables[work.table].index is None
            and previous.batch.row_count + work.batch.row_count <= CONFLATE_MAX_ROWS
        ):
            out[-1] = _merge(previous, work)
        else:
            out.append(work)
    return out


def _merge(a: _Work, b: _Work) -> _Work:
    rows = [r for r in (a.batch.rows, b.batch.rows) if r is not None]
    stamps = [s for s in (a.batch.timestamps_ms, b.batch.timestamps_ms) if s is not None]
    positions = dict(a.positions)
    for tp, offset in b.positions.items():
        positions[tp] = max(offset, positions.get(tp, -1))
    merged = DecodedBatch(
        rows=pa.concat_tables(rows) if len(rows) > 1 else (rows[0] if rows else None),
        errors=[],
        records=a.batch.records + b.batch.records,
        timestamps_ms=pa.concat_arrays(stamps)
        if len(stamps) > 1
        else (stamps[0] if stamps else None),
    )
    return _Work(a.table, merged, positions)
