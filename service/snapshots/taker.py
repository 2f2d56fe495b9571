"""Taking snapshots: every interval on a thread of its own, and once more at shutdown.

For each table that changed since its last snapshot: a cut of its mirror (a
list of references, taken under the mirror's lock: the only moment the applier
could wait, for microseconds), the fold of the cut into rows, the mirror
compacted to those rows, then the file written and old files pruned. Folding
and writing run here, beside ingestion; they never hold a lock the applier or
the IOLoop needs. The mirror is compacted even when the write fails (a full
disk, say), so memory stays bounded while the failure is counted and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from service.metrics import Metrics
from service.snapshots import files
from service.snapshots.files import SnapshotMeta
from service.snapshots.mirror import TableMirror

log = logging.getLogger(__name__)

FAILURE_LOG_INTERVAL_S = 60.0


class Snapshotter:
    """Writes each table's snapshot when it changed: every ``interval`` seconds and at stop."""

    def __init__(
        self,
        directory: Path,
        interval: float,
        mirrors: dict[str, TableMirror],
        fingerprints: dict[str, str],
        metrics: Metrics,
    ) -> None:
        self.directory = directory
        self.interval = interval
        self.mirrors = mirrors
        self.fingerprints = fingerprints
        self.metrics = metrics
        # Offsets of each table's newest snapshot (written or loaded): unchanged means no new one.
        self._last_offsets: dict[str, dict] = {}
        self._taken_at: dict[str, float] = {}
        self._failure_logged_at: dict[str, float] = {}
        self._lock = threading.Lock()  # one snapshot at a time: the thread's or the final one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        for name in mirrors:
            metrics.init_snapshots(name)
            metrics.snapshot_age.labels(name).set_function(self._age_of(name))

    def _age_of(self, name: str):
        def age() -> float:
            taken = self._taken_at.get(name)
            return -1.0 if taken is None else max(0.0, time.time() - taken)

        return age

    def loaded(self, name: str, meta: SnapshotMeta, size: int) -> None:
        """Table ``name`` started from this snapshot: it is the newest until the next one."""
        self._last_offsets[name] = dict(meta.offsets)
        self._taken_at[name] = meta.taken_at
        self.metrics.snapshot_bytes.labels(name).set(size)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (a snapshot in progress is finished), then take the last ones."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.take_all(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.take_all()

    def take_all(self, final: bool = False) -> None:
        for name in self.mirrors:
            if self._stop.is_set() and not final:
                return
            try:
                self.take(name, final)
            except Exception as exc:
                self.metrics.snapshots.labels(name, "failed").inc()
                self._log_failure(name, exc)

    def take(self, name: str, final: bool = False) -> bool:
        """Snapshot table ``name`` if it changed since its last snapshot; True if written."""
        with self._lock:
            mirror = self.mirrors[name]
            cut = mirror.cut()
            if not cut.ops and cut.offsets == self._last_offsets.get(name, {}):
                return False  # unchanged (or nothing read yet)
            started = time.perf_counter()
            rows = mirror.fold(cut)
            mirror.compact(cut, rows)
            meta = SnapshotMeta(
                table=name,
                fingerprint=self.fingerprints[name],
                offsets=cut.offsets,
                rows=rows.num_rows,
                taken_at=cut.taken_at,
            )
            path, size = files.write_snapshot(self.directory, meta, rows)
            files.prune(self.directory, name)
            seconds = time.perf_counter() - started
            self._last_offsets[name] = cut.offsets
            self._taken_at[name] = cut.taken_at
        self.metrics.snapshots.labels(name, "written").inc()
        self.metrics.snapshot_duration.labels(name).observe(seconds)
        self.metrics.snapshot_bytes.labels(name).set(size)
        log.log(
            logging.INFO if final else logging.DEBUG,
            "table %s: snapshot of %d rows written to %s in %.2f s (%d bytes)",
            name,
            rows.num_rows,
            path,
            seconds,
            size,
        )
        return True

    def _log_failure(self, name: str, exc: Exception) -> None:
        now = time.monotonic()
        last = self._failure_logged_at.get(name, -FAILURE_LOG_INTERVAL_S)
        if now - last < FAILURE_LOG_INTERVAL_S:
            return
        self._failure_logged_at[name] = now
        log.error(
            "table %s: snapshot to %s failed: %r (counted in livetables_snapshots_total; "
            "a restart replays from the last snapshot that was written)",
            name,
            self.directory,
            exc,
        )
