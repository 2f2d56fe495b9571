"""Replicated mode that scales with the audience.

A browser in replicated mode holds a worker table that mirrors a hosted
table. Perspective's usual way to feed it is a server View per browser, and
every View is recomputed inside each table update, so the update cost grows
with the audience. Here the server keeps no view at all: the batches the
applier applies *are* the deltas. Each applied batch is serialised once
(Arrow IPC for rows, JSON for removal keys) and the same bytes go to every
subscribed browser, which applies them to its worker table created with the
same index/limit.

A subscriber gets a snapshot and then every later batch, with nothing missed
or doubled in between: subscribing and applying take the same lock.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Protocol

import pyarrow as pa

from connectors.base import DecodedBatch
from service.tables import TableHost

log = logging.getLogger(__name__)

# One-byte frame kinds of the /replicate protocol (binary websocket messages).
SNAPSHOT = b"S"
UPDATE = b"U"
REMOVE = b"R"


class Subscriber(Protocol):
    def deliver(self, frames: list[bytes]) -> None:
        """Queue frames for sending; called from the applier thread, must not block."""


def arrow_ipc(rows: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return sink.getvalue().to_pybytes()


class Replicator:
    """Broadcasts applied batches to the browsers replicating each table."""

    def __init__(self, host: TableHost) -> None:
        self.host = host
        self.lock = threading.Lock()
        self._subscribers: dict[str, set[Subscriber]] = {name: set() for name in host.tables}

    def subscribe(self, name: str, subscriber: Subscriber) -> bytes:
        """Register and return the table's snapshot (Arrow IPC) as of registration."""
        with self.lock:
            view = self.host.tables[name].view()
            try:
                snapshot = view.to_arrow()
            finally:
                view.delete()
            self._subscribers[name].add(subscriber)
        return snapshot

    def unsubscribe(self, name: str, subscriber: Subscriber) -> None:
        with self.lock:
            self._subscribers[name].discard(subscriber)

    def subscriber_count(self, name: str | None = None) -> int:
        if name is not None:
            return len(self._subscribers[name])
        return sum(len(s) for s in self._subscribers.values())

    def applying(self, name: str, apply: Callable[[], None], batch: DecodedBatch) -> None:
        """Run ``apply`` and broadcast ``batch`` as one step no subscription can split."""
        with self.lock:
            apply()
            subscribers = self._subscribers.get(name)
            if not subscribers:
                return
            frames = self._frames(batch)
            for subscriber in list(subscribers):
                subscriber.deliver(frames)

    @staticmethod
    def _frames(batch: DecodedBatch) -> list[bytes]:
        frames = []
        if batch.rows is not None and batch.rows.num_rows:
            frames.append(UPDATE + arrow_ipc(batch.rows))
        if batch.removals is not None and len(batch.removals):
            keys = batch.removals.to_pylist()
            frames.append(REMOVE + json.dumps(keys, default=str).encode())
        return frames
