"""Snapshots of every table: restored at start-up, kept up to date, written at shutdown.

At start-up a thread of its own takes the tables one by one: a table with a
usable snapshot is loaded in one update through the writer (so replicas and
metrics see it), its mirror and progress are seeded with the snapshot's
offsets, and only then does its consumer start, at those offsets. A table
without one starts its consumer at once, by its start policy. ``/readyz``
waits, as always, until every table has applied everything up to the end
offsets its consumer saw when it started. Each table's start is logged in one
line saying how and why, and shown by ``livetables_table_start``.

Loading happens off the IOLoop (``/healthz`` answers meanwhile) and before the
table's consumer starts, so nothing else writes the table while it loads; a
load the engine refuses empties the table again and replays it instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from confluent_kafka import KafkaException

from connectors.kafka import KafkaSource
from connectors.offsets import log_ranges
from connectors.schema import arrow_schema
from connectors.source import Partition
from service.config import SnapshotsConfig, TableConfig
from service.ingest.progress import TableProgress
from service.ingest.writer import TableWriter
from service.metrics import Metrics
from service.snapshots import files, restore
from service.snapshots.fingerprint import fingerprint
from service.snapshots.mirror import TableMirror, conform
from service.snapshots.restore import StartDecision, StartKind
from service.snapshots.taker import Snapshotter

log = logging.getLogger(__name__)

RESTORE_JOIN_S = 300.0


class SnapshotKeeper:
    """Restores tables from snapshots at start, and takes snapshots while running."""

    def __init__(
        self,
        config: SnapshotsConfig,
        tables: dict[str, TableConfig],
        writer: TableWriter,
        progress: dict[str, TableProgress],
        metrics: Metrics,
        consumer_properties: dict[str, dict[str, object]],
    ) -> None:
        self.directory = Path(config.dir)
        self.tables = tables
        self.writer = writer
        self.progress = progress
        self.metrics = metrics
        self.consumer_properties = consumer_properties
        self.mirrors = {
            name: TableMirror(arrow_schema(dict(t.schema_ or {})), t.index, t.limit)
            for name, t in tables.items()
        }
        self.fingerprints = {name: fingerprint(t) for name, t in tables.items()}
        self.snapshotter = Snapshotter(
            self.directory, config.interval_seconds, self.mirrors, self.fingerprints, metrics
        )
        self.started: dict[str, StartKind] = {}
        self._stopping = False
        self._start_lock = threading.Lock()  # a source is started, or stop() has begun: not both
        self._restorer: threading.Thread | None = None

    # -- the applier's and the consumers' side ------------------------------------------

    def applied(self, name: str, batch, positions: dict[Partition, int]) -> None:
        """The applier applied ``batch`` (None: refused) to table ``name``, up to ``positions``."""
        self.mirrors[name].record(batch, positions)

    def assigned(self, name: str, starts: dict[Partition, int]) -> None:
        """Table ``name``'s consumer starts these partitions at these offsets."""
        self.mirrors[name].on_assigned(starts)

    # -- lifecycle --------------------------------------------------------------------

    def start(self, sources: list[KafkaSource]) -> None:
        """Restore and start every table's source (on a thread), then snapshot periodically."""
        self._check_directory()
        self._restorer = threading.Thread(
            target=self._restore_all, args=(sources,), name="restore", daemon=True
        )
        self._restorer.start()

    def stop_starting(self) -> None:
        """No source starts from now on; waits for a load in progress."""
        with self._start_lock:
            self._stopping = True
        if self._restorer is not None and self._restorer.is_alive():
            self._restorer.join(RESTORE_JOIN_S)

    def stop(self) -> None:
        """After the applier stopped: a last snapshot of every table that changed."""
        self.snapshotter.stop()

    # -- start-up ---------------------------------------------------------------------

    def _check_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("snapshots.dir %s cannot be created: %s", self.directory, exc)
            return
        if not os.access(self.directory, os.W_OK | os.X_OK):
            log.error(
                "snapshots.dir %s is not writable: no snapshot will be written, and the "
                "next start replays every table",
                self.directory,
            )

    def _restore_all(self, sources: list[KafkaSource]) -> None:
        # Tables with nothing to load start first, so their catch-up is not held up by loads;
        # the others are read one at a time (one table's rows in memory at once).
        ordered = sorted(sources, key=lambda s: bool(files.candidates(self.directory, s.name)))
        for source in ordered:
            if self._stopping:
                return
            try:
                started = time.perf_counter()
                decision = self._restore(source, self._decide(source.name), started)
            except Exception as exc:  # never a table left without its consumer
                log.exception("table %s: restoring from a snapshot failed", source.name)
                self._forget(source)
                decision = restore.fallback("load_failed", repr(exc))
            self._start(source, decision)
        self.snapshotter.start()

    def _decide(self, name: str) -> StartDecision:
        try:
            return restore.choose(self.directory, name, self.fingerprints[name])
        except Exception as exc:
            log.exception("table %s: reading its snapshots failed", name)
            return restore.fallback("corrupt", repr(exc))

    def _restore(
        self, source: KafkaSource, decision: StartDecision, started: float
    ) -> StartDecision:
        """Load the decision's snapshot, if any; how the table starts after all."""
        snapshot = decision.snapshot
        if snapshot is None:
            return decision
        name = source.name
        problem = self._offsets_problem(name, snapshot.meta.offsets)
        if problem is not None:
            return problem
        mirror = self.mirrors[name]
        rows = conform(snapshot.rows, mirror.schema)
        read = time.perf_counter() - started  # the file read and checked, the offsets too
        try:
            self.writer.load(name, snapshot.body, rows)
        except Exception as exc:
            log.exception("table %s: the engine refused the snapshot's rows", name)
            self._forget(source)
            return restore.fallback("load_failed", f"{snapshot.path}: {exc!r}")
        offsets = snapshot.meta.offsets
        mirror.seed(rows, offsets)
        self.progress[name].on_applied(offsets)
        source.resume_at(offsets)
        self.snapshotter.loaded(name, snapshot.meta, snapshot.size)
        seconds = time.perf_counter() - started
        self.metrics.snapshot_restore.labels(name).set(seconds)
        age = max(0.0, time.time() - snapshot.meta.taken_at)
        return StartDecision(
            StartKind.SNAPSHOT,
            f"{snapshot.path} ({rows.num_rows} rows, taken {age:.0f} s ago) in {seconds:.2f} s "
            f"(reading and checking {read:.2f} s, the engine's update the rest); reading on "
            "from its offsets",
        )

    def _forget(self, source: KafkaSource) -> None:
        """Back to an empty table read by its start policy, whatever the restore had done."""
        try:
            self.writer.clear(source.name)
            mirror = self.mirrors[source.name]
            mirror.seed(mirror.schema.empty_table(), {})
            source.resume_at({})
        except Exception:
            log.exception("table %s: undoing a failed restore failed", source.name)

    def _offsets_problem(self, name: str, offsets: dict[Partition, int]) -> StartDecision | None:
        topics = sorted({t for t, _ in offsets})
        if not topics:
            return None
        try:
            ranges = log_ranges(self.consumer_properties[name], topics, name)
        except KafkaException as exc:
            # Loaded anyway: the consumer resumes when the brokers answer, and an offset
            # gone by then is reset by the start policy, with a warning (connectors/kafkalog).
            log.warning(
                "table %s: cannot check the snapshot's offsets against the topic now (%s); "
                "loading it anyway",
                name,
                exc,
            )
            return None
        return restore.offsets_problem(offsets, ranges)

    def _start(self, source: KafkaSource, decision: StartDecision) -> None:
        """Say how the table starts (before: it may be ready as soon as its source runs)."""
        name = source.name
        if self._stopping:
            return
        self.started[name] = decision.kind
        self.metrics.table_started(name, decision.kind)
        policy = self.tables[name].start
        if decision.kind is StartKind.SNAPSHOT:
            log.info("table %s: started from snapshot %s", name, decision.detail)
        elif decision.kind is StartKind.REPLAY:
            log.info("table %s: replaying from Kafka (start %s): %s", name, policy, decision.detail)
        else:
            log.warning(
                "table %s: snapshot not used (%s: %s); replaying from Kafka (start %s) instead",
                name,
                decision.kind.removeprefix("fallback:"),
                decision.detail,
                policy,
            )
        with self._start_lock:
            if not self._stopping:
                source.start()
