"""An Arrow copy of what a table holds, so that a snapshot never has to ask the engine.

Reading a table back out of Perspective means a view over all of it, and both
ways to get one stall ingestion: building a flat view of a 1M-row table took
1.2-4 s with the table locked (perspective 4.3.0, measured here; ~22 s for
10M rows), and while a flat view is open every update recomputes it (+150 ms
per update at 1M rows). A snapshot would stop the table for seconds.

So each table keeps a mirror: the rows it holds as Arrow (``base``) plus the
batches applied since (``ops``), fed by the applier right after it applies a
batch, and the next offset per partition that those stand for. Taking a
snapshot only copies the list of references under a lock (microseconds, see
:meth:`TableMirror.cut`); folding the batches into rows and writing them
happens on the snapshot thread, never on the applier or the IOLoop.

The fold is the table's own semantics, replayed in Arrow:

* append: every row, in order;
* rolling window (``limit``): the last ``limit`` rows, in order, so that after
  a load the oldest go first again;
* indexed: the last operation per key wins; an upsert replaces the whole row
  (a null in a batch sets the column to null, as Perspective does with Arrow
  input), a removal deletes it.

The offsets only move at the end of a whole Kafka batch: when the pipeline split
a batch in several (the decoder raised), the first parts carry no offsets, and
a cut leaves them out until the last part is recorded, so a snapshot never holds
part of a batch whose records would be read again after a restart.

The mirror costs memory: an Arrow copy of the rows, about a fifth of what the
engine itself holds for them (32 vs 149 bytes per row for small JSON records).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import DecodedBatch
from connectors.source import Partition

# Past this many chunks the base is combined into one (freeing the buffers of dropped rows).
MAX_BASE_CHUNKS = 64


@dataclass(frozen=True)
class Cut:
    """A consistent point of one table: its rows as ``base`` + ``ops``, and their offsets."""

    base: pa.Table
    ops: tuple[DecodedBatch, ...]
    offsets: dict[Partition, int]
    taken_at: float


class TableMirror:
    """The rows of one table as Arrow, and the offsets they stand for."""

    def __init__(self, schema: pa.Schema, index: str | None, limit: int | None) -> None:
        self.schema = schema
        self.index = index
        self.limit = limit
        self._lock = threading.Lock()
        self._base = schema.empty_table()
        self._ops: list[DecodedBatch] = []
        self._offsets: dict[Partition, int] = {}
        self._clean = 0  # ops[:clean] end where a whole Kafka batch ends

    def seed(self, rows: pa.Table, offsets: dict[Partition, int]) -> None:
        """Start from a loaded snapshot (before any batch of the table is applied)."""
        with self._lock:
            self._base = conform(rows, self.schema)
            self._ops.clear()
            self._clean = 0
            self._offsets = dict(offsets)

    def on_assigned(self, starts: dict[Partition, int]) -> None:
        """Partitions start at these offsets: what lies before them is not the table's."""
        with self._lock:
            self._merge(starts)

    def record(self, batch: DecodedBatch | None, positions: dict[Partition, int]) -> None:
        """A batch the table has just applied (None: none applied), and the offsets it ends at.

        Runs on the applier thread after each batch; costs an append under a lock.
        """
        if batch is not None and not (batch.row_count or batch.removal_count):
            batch = None
        if batch is None and not positions:
            return
        with self._lock:
            if batch is not None:
                self._ops.append(batch)
            if positions:
                self._merge(positions)
                self._clean = len(self._ops)

    def _merge(self, positions: dict[Partition, int]) -> None:
        for tp, offset in positions.items():
            if offset > self._offsets.get(tp, -1):
                self._offsets[tp] = offset

    def cut(self) -> Cut:
        """The table as of the last whole Kafka batch applied: references only, no copy."""
        with self._lock:
            return Cut(
                self._base, tuple(self._ops[: self._clean]), dict(self._offsets), time.time()
            )

    def compact(self, cut: Cut, rows: pa.Table) -> None:
        """Replace the cut's base and batches with ``rows``, their fold (what was written)."""
        with self._lock:
            if self._base is not cut.base:  # seeded again meanwhile: the cut is stale
                return
            done = len(cut.ops)
            del self._ops[:done]
            self._clean -= done
            self._base = rows

    def fold(self, cut: Cut) -> pa.Table:
        """The rows the table holds at the cut (runs off the applier thread)."""
        if self.index is not None:
            rows = fold_indexed(cut.base, cut.ops, self.index, self.schema)
        else:
            added = [conform(op.rows, self.schema) for op in cut.ops if op.row_count]
            rows = cut.base
            if added:  # one new chunk per snapshot, not one per batch
                rows = pa.concat_tables([rows, pa.concat_tables(added).combine_chunks()])
            if self.limit is not None and rows.num_rows > self.limit:
                rows = rows.slice(rows.num_rows - self.limit)
        if rows.num_columns and rows.column(0).num_chunks > MAX_BASE_CHUNKS:
            rows = rows.combine_chunks()
        return rows


def conform(rows: pa.Table | None, schema: pa.Schema) -> pa.Table:
    """``rows`` with exactly the table's Arrow schema (no metadata, the table's types)."""
    if rows is None:
        return schema.empty_table()
    if rows.schema.equals(schema, check_metadata=False):
        return rows.replace_schema_metadata(None) if rows.schema.metadata else rows
    # Column by column, batch by batch: a string column of a large_string snapshot may not
    # fit 32-bit offsets in one piece.
    batches = [
        pa.RecordBatch.from_arrays(
            [batch.column(f.name).cast(f.type) for f in schema], schema=schema
        )
        for batch in rows.select(schema.names).to_batches(max_chunksize=1 << 20)
    ]
    return pa.Table.from_batches(batches, schema=schema)


def fold_indexed(
    base: pa.Table, ops: tuple[DecodedBatch, ...], index: str, schema: pa.Schema
) -> pa.Table:
    """``base`` (one row per key) after ``ops`` in order: the last operation per key wins."""
    if not ops:
        return base
    index_type = schema.field(index).type
    upserts: list[pa.Table] = []
    keys: list[pa.Array] = []
    kinds: list[np.ndarray] = []  # True for an upsert, False for a removal
    for op in ops:
        if op.row_count:
            rows = conform(op.rows, schema)
            upserts.append(rows)
            keys.append(rows.column(index).combine_chunks())
            kinds.append(np.ones(rows.num_rows, dtype=bool))
        if op.removals is not None and op.removal_count:
            removals = op.removals
            if isinstance(removals, pa.ChunkedArray):
                removals = removals.combine_chunks()
            keys.append(removals.cast(index_type))
            kinds.append(np.zeros(op.removal_count, dtype=bool))
    all_keys = pa.concat_arrays(keys)
    is_upsert = np.concatenate(kinds)
    sequence = np.arange(len(all_keys), dtype=np.int64)
    last = (
        pa.table({"key": all_keys, "seq": sequence})
        .group_by("key", use_threads=False)
        .aggregate([("seq", "max")])
    )
    winners = np.sort(last.column("seq_max").to_numpy())
    upsert_winners = winners[is_upsert[winners]]
    # Position of each upsert operation among the upsert rows alone.
    upsert_rank = np.cumsum(is_upsert) - 1
    new_rows = (
        pa.concat_tables(upserts).take(pa.array(upsert_rank[upsert_winners])).combine_chunks()
        if len(upsert_winners)
        else schema.empty_table()
    )
    touched = last.column("key")
    untouched = pc.invert(pc.is_in(base.column(index), value_set=touched.combine_chunks()))
    kept = base.filter(untouched)
    return pa.concat_tables([kept, new_rows])
