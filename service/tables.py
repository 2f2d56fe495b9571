"""The Perspective tables livetables hosts, created from the config.

One ``perspective.Server`` holds every table; websocket sessions are opened on
the same server, so a remote client opens a table by its config name. Batches
arrive here already decoded and folded: each is applied with at most one
``update()`` and one ``remove()``, never one call per record.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager

import perspective
import pyarrow as pa

from connectors.base import DecodedBatch
from service.cardinality import DistinctValues
from service.config import LivetablesConfig, TableConfig
from service.engine import EngineWorkers, TableGate

log = logging.getLogger(__name__)

# perspective 4.3.0 computes the pivoted (group_by/split_by) views of a table on a shared
# thread pool inside each update(), and each view waits on tasks of its own in that pool:
# with as many pivoted views on one table as the pool has threads, update() can wait
# forever (measured: 2 threads, 2 views: half the updates hung; 64 threads, 60 views: none).
# The pool defaults to the core count; its threads idle when unused and cost no speed.
ENGINE_POOL_THREADS = 64

# Rolling-window tables slow down superlinearly with the batch size once full,
# so their updates are applied in slices of at most this many rows. Measured on a
# full 100k-row window (perspective-python 4.3.0, 5 columns): ~2.1-2.4 us per row in
# slices of 1-2k rows, 3.3 us at 4k, 4.7 us at 8k, 16 us at 100k.
LIMIT_TABLE_SLICE = 2048


class TableHost:
    """Owns the perspective Server, its local client and the hosted tables."""

    def __init__(self, config: LivetablesConfig) -> None:
        self.config = config
        perspective.set_num_cpus(max(ENGINE_POOL_THREADS, perspective.num_cpus()))
        self.server = perspective.Server()
        self.client = self.server.new_local_client()
        # Clients' engine calls (websocket sessions, replica snapshots) run here, off the IOLoop.
        self.workers = EngineWorkers(config.server.engine_threads)
        self.tables: dict[str, perspective.Table] = {}
        # Row counts as of the last applied batch, read by the web handlers so that
        # an HTTP request never waits on the engine while an update runs.
        self.row_counts: dict[str, int] = {}
        # What the guard needs to price a client's view before the engine builds it. Editable
        # tables take rows from clients too, which the applier never sees: no bound for them.
        self.distinct: dict[str, DistinctValues] = {}
        # Clients' reads of a table take turns with its updates (see service/engine.py).
        self.gates: dict[str, TableGate] = {}
        for name, table in config.tables.items():
            self.tables[name] = self._create(name, table)
            self.gates[name] = TableGate()
            self.row_counts[name] = 0
            if not table.editable:
                self.distinct[name] = DistinctValues(list(table.engine_schema))

    def _create(self, name: str, table: TableConfig) -> perspective.Table:
        # The engine's index and limit: a derived table is indexed on its group key, an
        # append table with retention on its row numbers (see TableConfig.engine_index).
        options: dict[str, object] = {"name": name}
        if table.engine_index is not None:
            options["index"] = table.engine_index
        if table.engine_limit is not None:
            options["limit"] = table.engine_limit
        log.info("hosting table %s (%s)", name, ", ".join(f"{k}={v}" for k, v in options.items()))
        return self.client.table(table.engine_schema, **options)

    def apply(self, name: str, batch: DecodedBatch) -> None:
        """Apply one decoded batch: its rows, then its removals (their keys are disjoint)."""
        table = self.tables[name]
        # Values first: a view priced from now on knows them, whenever the update lands.
        if batch.rows is not None and batch.rows.num_rows and name in self.distinct:
            self.distinct[name].observe(batch.rows)
        with self.gates[name].writing():
            if batch.rows is not None and batch.rows.num_rows:
                self._update(name, table, batch.rows)
            if batch.removals is not None and len(batch.removals):
                table.remove(batch.removals.to_pylist())
            self.row_counts[name] = table.size()

    def load(self, name: str, body: bytes, rows: pa.Table) -> None:
        """Fill an empty table with a snapshot's rows in one update of its Arrow IPC ``body``.

        ``rows`` are the same rows, read by the distinct-value bounds on a thread of
        their own meanwhile (the engine and pyarrow both release the GIL, so on a
        10M-row table this costs no time); no client reads the table until both are
        done, or a view priced meanwhile would not know the values yet.
        """
        table = self.tables[name]
        with self.gates[name].writing():
            counting = None
            if rows.num_rows and name in self.distinct:
                counting = threading.Thread(
                    target=self.distinct[name].observe, args=(rows,), name=f"distinct-{name}"
                )
                counting.start()
            try:
                table.update(body)
            finally:
                if counting is not None:
                    counting.join()
            self.row_counts[name] = table.size()

    def clear(self, name: str) -> None:
        """Empty a table (after a load that failed, before it is replayed instead)."""
        with self.gates[name].writing():
            self.tables[name].clear()
            self.row_counts[name] = self.tables[name].size()

    def _update(self, name: str, table: perspective.Table, rows: pa.Table) -> None:
        update_table(table, rows, self.config.tables[name].engine_limit)

    def size(self, name: str) -> int:
        """Rows in the table after the last applied batch."""
        return self.row_counts[name]

    # -- facts for the guard (service/security/cost.py), asked from engine worker threads --

    def reading(self, name: str) -> AbstractContextManager[None]:
        """Hold while a client's request reads the table: updates wait, then take their turn."""
        return self.gates[name].reading()

    def writing(self, name: str) -> AbstractContextManager[None]:
        """Hold while a client's request takes the table's write lock (a new view, say)."""
        return self.gates[name].writing()

    def rows_now(self, name: str) -> int:
        """Rows in the table now, as the engine counts them (clients may edit an editable table)."""
        return self.tables[name].size()

    def columns(self, name: str) -> list[str]:
        return list(self.config.tables[name].engine_schema)

    def distinct_bound(self, name: str, column: str) -> int | None:
        """At most this many distinct values in ``column``, or None if unknown."""
        tracker = self.distinct.get(name)
        return None if tracker is None else tracker.bound(column)

    def expression_types(self, name: str, expressions: dict[str, str]) -> dict[str, str]:
        """The type of each expression the engine accepts (it parses them; it computes nothing)."""
        result = self.tables[name].validate_expressions(expressions)
        return dict(result.get("expression_schema", {}))

    def close(self) -> None:
        """Delete the tables so the engine frees them (views are closed with their sessions).

        Sessions close on the engine workers: wait for them first, since deleting a
        table that still has a view aborts the process.
        """
        self.workers.shutdown()
        for name, table in list(self.tables.items()):
            try:
                table.delete()
            except perspective.PerspectiveError as exc:
                log.debug("table %s not deleted at close: %s", name, exc)
        self.tables.clear()


def update_table(table: perspective.Table, rows: pa.Table, limit: int | None) -> None:
    """One Arrow batch into a Perspective table, the way every table is updated.

    A rolling-window table (``limit``) gets only the batch's last ``limit`` rows, in
    slices of ``LIMIT_TABLE_SLICE``: one large update of a limit table costs far more
    than the same rows in slices. The benchmark's update-only ceiling calls this too.
    """
    # perspective 4.3.0 loses the nulls of a multi-chunk Arrow table whose chunks differ in
    # having nulls (a missing field became 0.0 / ""); one chunk per column is read right.
    rows = rows.combine_chunks()
    if limit is None or rows.num_rows <= LIMIT_TABLE_SLICE:
        table.update(rows)
        return
    if rows.num_rows > limit:
        rows = rows.slice(rows.num_rows - limit)
    for start in range(0, rows.num_rows, LIMIT_TABLE_SLICE):
        table.update(rows.slice(start, LIMIT_TABLE_SLICE))
