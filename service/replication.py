"""Replicated mode that scales with the audience.

A browser in replicated mode holds a worker table that mirrors a hosted
table. Perspective's usual way to feed it is a server View per browser, and
every View is recomputed inside each table update, so the update cost grows
with the audience. Here the server keeps no view at all: the batches the
applier applies *are* the deltas. They are serialised once (Arrow IPC for
rows, JSON for removal keys) and the same bytes go to every subscribed
browser, which applies them to its worker table created with the same
index/limit.

Batches are paced: applied batches wait in a per-table list and are sent
together every ``interval`` seconds, consecutive updates merged into one Arrow
frame. The interval grows with the audience (about ``MESSAGES_PER_SECOND``
messages in all per table), so a large audience costs a bounded number of
socket writes, and a small one gets its updates within ~10 ms.

A subscriber gets a snapshot and then every later batch, with nothing missed
or doubled in between: subscribing, applying and flushing a table take that
table's lock, a new subscriber's snapshot is taken right after a flush, and
handed to the subscriber (``deliver_snapshot``) before it can receive a delta.

Snapshots are taken on an engine worker (never on the IOLoop: serialising a
large table takes a while, and the lock waits for the update in progress),
and shared: the serialised frame is kept until the table next changes (or for
``SNAPSHOT_KEEP_S``), so a crowd of new subscribers of an unchanged table costs
one ``to_arrow()``, not one each. Unsubscribing never waits for an update: the
subscriber sets are replaced, never mutated, under a lock of their own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import pyarrow as pa

from connectors.base import DecodedBatch
from connectors.cputime import thread_clock
from connectors.threadname import name_os_thread
from service.tables import TableHost

log = logging.getLogger(__name__)

# One-byte frame kinds of the /replicate protocol (binary websocket messages).
SNAPSHOT = b"S"
UPDATE = b"U"
REMOVE = b"R"

MESSAGES_PER_SECOND = 10000
MIN_INTERVAL_S = 0.002
MAX_INTERVAL_S = 0.1
# How long a serialised snapshot of an unchanged table is kept for the next subscribers.
SNAPSHOT_KEEP_S = 5.0
# With nothing published, the pacing thread still wakes this often (old snapshots go).
IDLE_WAKEUP_S = 1.0


class Subscriber(Protocol):
    def deliver_snapshot(self, frame: bytes) -> bool:
        """Queue the snapshot frame, or refuse it (False); called with the table's lock held."""

    def deliver(self, frames: list[bytes]) -> None:
        """Queue frames for sending; called with the table's lock held, must not block."""


class Fanout(Protocol):
    """Delivers one flush to many subscribers at once (the web side's replicas).

    A subscriber with a ``fanout`` attribute is fed through it, together with every
    other subscriber of the same fanout, in one call per flush: the cost that grows
    with the audience is then one socket write per replica, nothing else. Others get
    ``deliver()``, one by one.
    """

    def broadcast(
        self,
        subscribers: list[Subscriber],
        frames: list[bytes],
        failed: Callable[[Subscriber], None],
    ) -> None:
        """Queue ``frames`` for every subscriber, never blocking; ``failed(s)`` drops ``s``."""


def arrow_ipc(rows: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return sink.getvalue().to_pybytes()


def pacing_interval(subscribers: int) -> float:
    """Seconds between broadcasts for an audience of this size."""
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, subscribers / MESSAGES_PER_SECOND))


class Replicator:
    """Broadcasts applied batches to the browsers replicating each table."""

    def __init__(self, host: TableHost) -> None:
        self.host = host
        self._locks = {name: threading.Lock() for name in host.tables}
        self._subscribers_lock = threading.Lock()
        self._subscribers: dict[str, frozenset[Subscriber]] = {
            name: frozenset() for name in host.tables
        }
        self._pending: dict[str, list[DecodedBatch]] = {name: [] for name in host.tables}
        self._snapshots: dict[str, tuple[bytes, float]] = {}  # frame, when taken
        self.snapshots_taken = 0
        self._stop = threading.Event()
        self._published = threading.Event()  # a batch waits for its replicas
        self._thread = threading.Thread(target=self._pace, name="replicator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._published.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _pace(self) -> None:
        """Flush as soon as a batch is published, but at most once per ``interval()``.

        A batch applied after a quiet spell goes out at once (no timer tick to wait
        for); under a steady stream, flushes come one interval apart and each carries
        every batch applied since the last.
        """
        name_os_thread("replicator")
        last_flush = 0.0
        while not self._stop.is_set():
            self._published.wait(IDLE_WAKEUP_S)
            self._published.clear()
            wait = last_flush + self.interval() - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            last_flush = time.monotonic()
            try:
                self.flush()
                self._forget_old_snapshots()
            except Exception:  # a broadcast problem must not end replication for everyone
                log.exception("replication flush failed")

    def subscribe(self, name: str, subscriber: Subscriber) -> bool:
        """Hand ``subscriber`` the table's snapshot and register it, as one step.

        False if the subscriber refused the snapshot (too large): it is not registered.
        Blocks while the table is being updated: call it off the IOLoop.
        """
        with self._locks[name]:
            # Everyone else gets what is pending first; the snapshot already holds it.
            self._flush_table(name)
            if not subscriber.deliver_snapshot(self._snapshot(name)):
                return False
            with self._subscribers_lock:
                self._subscribers[name] = self._subscribers[name] | {subscriber}
        return True

    def _snapshot(self, name: str) -> bytes:
        """The table as one ``S`` frame: the kept one if the table has not changed since."""
        kept = self._snapshots.get(name)
        if kept is not None:
            return kept[0]
        # Making (and deleting) a view takes the table's write lock in the engine: a write turn.
        with self.host.writing(name):
            view = self.host.tables[name].view()
            try:
                frame = SNAPSHOT + view.to_arrow()
            finally:
                view.delete()
        self.snapshots_taken += 1
        self._snapshots[name] = (frame, time.monotonic())
        return frame

    def _forget_old_snapshots(self) -> None:
        now = time.monotonic()
        for name, (_frame, taken) in list(self._snapshots.items()):
            if now - taken > SNAPSHOT_KEEP_S:
                with self._locks[name]:
                    kept = self._snapshots.get(name)
                    if kept is not None and kept[1] == taken:
                        del self._snapshots[name]

    def unsubscribe(self, name: str, subscriber: Subscriber) -> None:
        """Never waits for a table update (safe on the IOLoop)."""
        with self._subscribers_lock:
            self._subscribers[name] = self._subscribers[name] - {subscriber}

    def subscriber_count(self, name: str | None = None) -> int:
        if name is not None:
            return len(self._subscribers[name])
        return sum(len(s) for s in self._subscribers.values())

    def interval(self) -> float:
        """How long to wait before the next flush, for the largest audience."""
        largest = max((len(s) for s in self._subscribers.values()), default=0)
        return pacing_interval(largest)

    @contextmanager
    def applying(self, name: str) -> Iterator[None]:
        """Hold while table ``name`` is changed and the batch handed to :meth:`publish`.

        A replica that subscribes meanwhile waits, so its snapshot holds all of a batch
        or none of it, then every later batch (see ``service/ingest/writer.py``).
        """
        with self._locks[name]:
            self._snapshots.pop(name, None)  # first: a failed apply may change the table too
            yield

    def publish(self, name: str, batch: DecodedBatch) -> None:
        """Queue a batch just applied to table ``name`` for its replicas (inside ``applying``)."""
        if self._subscribers.get(name):
            self._pending[name].append(batch)
            self._published.set()

    def flush(self) -> None:
        """Send every table's pending batches to its subscribers."""
        clock = thread_clock()
        clock.start()
        for name in self._pending:
            with self._locks[name]:
                self._flush_table(name)
            clock.lap(name, "replicate")

    def _flush_table(self, name: str) -> None:
        pending, self._pending[name] = self._pending[name], []
        subscribers = self._subscribers.get(name)
        if not pending or not subscribers:
            return
        frames = _frames(pending)

        def failed(subscriber: Subscriber) -> None:
            # Its replica has missed these frames and cannot be trusted: it is dropped,
            # and every other subscriber still gets them.
            self.unsubscribe(name, subscriber)
            log.exception("table %s: a replica could not be fed; unsubscribed it", name)

        fanouts: dict[int, tuple[Fanout, list[Subscriber]]] = {}
        for subscriber in subscribers:
            fanout = getattr(subscriber, "fanout", None)
            if fanout is not None:
                fanouts.setdefault(id(fanout), (fanout, []))[1].append(subscriber)
                continue
            try:
                subscriber.deliver(frames)
            except Exception:
                failed(subscriber)
        for fanout, members in fanouts.values():
            try:
                fanout.broadcast(members, frames, failed)
            except Exception:
                log.exception("table %s: a broadcast to %d replicas failed", name, len(members))
                for member in members:
                    self.unsubscribe(name, member)


def _frames(batches: list[DecodedBatch]) -> list[bytes]:
    """Frames for batches in order: consecutive row updates merged into one Arrow frame."""
    frames: list[bytes] = []
    rows: list[pa.Table] = []

    def close_rows() -> None:
        if rows:
            merged = pa.concat_tables(rows) if len(rows) > 1 else rows[0]
            frames.append(UPDATE + arrow_ipc(merged))
            rows.clear()

    for batch in batches:
        if batch.rows is not None and batch.rows.num_rows:
            rows.append(batch.rows)
        if batch.removals is not None and len(batch.removals):
            # A batch's removals and rows have disjoint keys, so the removal may follow
            # the rows merged so far; a later batch's rows must follow the removal.
            close_rows()
            keys = batch.removals.to_pylist()
            frames.append(REMOVE + json.dumps(keys, default=str).encode())
    close_rows()
    return frames
