"""Retention on the write path: what the writer does to a batch of a table whose rows age out.

The writer (``service/ingest/writer.py``) hands every batch of such a table to
:meth:`RetentionBook.prepare` before applying it, and asks
:meth:`RetentionBook.expire` for the rows to remove on each expiry tick, both
under the table's write lock, so an expiry decided now cannot remove a row an
update refreshed a moment ago, and every removal reaches replicated browsers
and derived tables the way any other change does.

Per batch, in whole arrays:

* each row's time: its Kafka record timestamp (the decoder's
  :data:`~service.config.tables.TIMESTAMP_COLUMN`, dropped here: it never
  reaches the table) or the ``retention_column``; a row without one (a null,
  or a record the broker gave no timestamp) ages from the moment it is applied;
* append tables (:class:`~service.retention.tracker.RowLog`): the rows are
  numbered into the internal :data:`~service.config.tables.ROW_COLUMN` index,
  and when the table has a ``limit``, the removal of the rows past it joins the
  batch (Perspective cannot combine an index with its own ``limit``);
* indexed tables (:class:`~service.retention.tracker.KeyLog`): upserted keys
  and removed keys are recorded.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import DecodedBatch
from connectors.schema import ARROW_TYPES
from service.config import LivetablesConfig, TableConfig
from service.config.tables import ROW_COLUMN, TIMESTAMP_COLUMN
from service.retention.tracker import KeyLog, RowLog


def now_ms() -> int:
    return int(time.time() * 1000)


class TableRetention:
    """One table's rows and when each ages out."""

    def __init__(self, name: str, table: TableConfig) -> None:
        assert table.retention is not None  # only tables with retention get one
        self.name = name
        self.window_ms = int(table.retention.total_seconds() * 1000)
        self.column = table.retention_column or TIMESTAMP_COLUMN
        self.carried = table.kafka_timestamps  # the time column came from the decoder
        self.limit = table.limit
        self.index = table.index
        self.rows: RowLog | None = RowLog() if table.row_ids else None
        self.keys: KeyLog | None = None
        if self.index is not None:
            self.keys = KeyLog(ARROW_TYPES[table.columns[self.index]])

    def prepare(self, batch: DecodedBatch, now: int) -> DecodedBatch:
        """The batch as the table takes it; its rows recorded with their times."""
        rows = batch.rows
        times = None
        if rows is not None and rows.num_rows:
            times = self._times(rows, now)
            if self.carried:
                rows = rows.drop_columns([TIMESTAMP_COLUMN])
        elif rows is not None and self.carried and TIMESTAMP_COLUMN in rows.column_names:
            rows = rows.drop_columns([TIMESTAMP_COLUMN])
        if self.rows is not None:
            return self._numbered(batch, rows, times)
        assert self.keys is not None
        keys = rows.column(self.index) if rows is not None and times is not None else None
        self.keys.record(keys, times, batch.removals)
        return replace(batch, rows=rows)

    def _numbered(
        self, batch: DecodedBatch, rows: pa.Table | None, times: np.ndarray | None
    ) -> DecodedBatch:
        assert self.rows is not None
        if rows is not None and times is not None:
            if self.limit is not None and rows.num_rows > self.limit:
                rows = rows.slice(rows.num_rows - self.limit)
                times = times[-self.limit :]
            ids = self.rows.append(times)
            rows = rows.append_column(ROW_COLUMN, pa.array(ids, pa.float64()))
        removals = batch.removals
        if self.limit is not None:
            rolled = self.rows.roll(self.limit)
            if len(rolled):
                removals = pa.array(rolled, pa.float64())
        return replace(batch, rows=rows, removals=removals)

    def _times(self, rows: pa.Table, now: int) -> np.ndarray:
        """Each row's time in epoch ms; the time of applying where it has none."""
        column = rows.column(self.column)
        if column.type != pa.timestamp("ms"):
            column = column.cast(pa.timestamp("ms"))
        stamps = pc.fill_null(column.cast(pa.int64()), now).to_numpy()
        if self.carried:  # librdkafka says -1 for a record without a timestamp
            stamps = np.where(stamps > 0, stamps, now)
        return np.ascontiguousarray(stamps, dtype=np.int64)

    def expire(self, now: int) -> pa.Array | None:
        """The index values of the rows older than the window (None when there is none)."""
        cutoff = now - self.window_ms
        if self.rows is not None:
            ids = self.rows.expire(cutoff)
            return pa.array(ids, pa.float64()) if len(ids) else None
        assert self.keys is not None
        keys = self.keys.expire(cutoff)
        return keys if len(keys) else None

    def tracked(self) -> int:
        """Entries held for this table (memory: about 16 bytes each, plus the keys)."""
        return len(self.rows) if self.rows is not None else len(self.keys or ())


class RetentionBook:
    """Every table's retention; tables without ``retention:`` pass through untouched."""

    def __init__(self, config: LivetablesConfig) -> None:
        self.tables = {
            name: TableRetention(name, table)
            for name, table in config.tables.items()
            if table.retention is not None
        }

    def prepare(self, name: str, batch: DecodedBatch) -> DecodedBatch:
        retention = self.tables.get(name)
        return batch if retention is None else retention.prepare(batch, now_ms())

    def expire(self, name: str) -> pa.Array | None:
        retention = self.tables.get(name)
        return None if retention is None else retention.expire(now_ms())
