"""When each row of a table ages out: the bookkeeping behind ``retention:``, in whole arrays.

Perspective answers no "rows older than T" question cheaply (a filter over a
moving cutoff is a new view, a scan of the whole table, each time), so the
writer tells these structures what it applied and they answer the expiry
thread with the keys to remove. Nothing here loops over rows in Python: a
batch is recorded as arrays, and an expiry tick works on sorted arrays with
binary searches and Arrow kernels.

* :class:`RowLog` (append tables): rows are numbered in arrival order (the
  table's internal index). Each tick seals the rows recorded since the last one
  into a chunk sorted by time; expiring is a binary search per chunk. The
  ``limit`` is kept here too: the oldest numbers beyond it are removed as new
  rows arrive, and numbers already gone are not removed twice.
* :class:`KeyLog` (indexed tables): a key's row ages from its last upsert, and
  a tombstone removes it. Keys settle into one table sorted by time (one entry
  per live key); upserts and removals since are kept as they came and folded in
  (last operation per key wins) when they hold a row that may expire, or when
  they grow to half the settled table, so the cost of a tick follows the
  changes, not the table, and folding is amortised like a log-structured merge.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Fold the recent operations of an indexed table into its settled keys past this many.
FOLD_MIN_ROWS = 65536

_NO_IDS = np.empty(0, dtype=np.int64)


class RowLog:
    """Row numbers of an append table, each with the time (epoch ms) it ages from."""

    def __init__(self) -> None:
        self.next_id = 0
        # Every row numbered below the floor is gone (rolled out by the limit, or expired).
        self.floor = 0
        self._gone = _NO_IDS  # expired rows at or above the floor, sorted
        # (times sorted, their row numbers, the largest of those numbers), one per tick
        self._chunks: list[tuple[np.ndarray, np.ndarray, int]] = []
        self._recent: list[tuple[int, np.ndarray]] = []  # (first row number, times) per batch

    def __len__(self) -> int:
        """Rows still tracked (upper bound of the rows left in the table)."""
        return sum(len(ids) for _, ids, _ in self._chunks) + sum(len(t) for _, t in self._recent)

    def append(self, times_ms: np.ndarray) -> np.ndarray:
        """Number a batch of new rows (in order) and remember when each ages out."""
        first = self.next_id
        self.next_id += len(times_ms)
        self._recent.append((first, times_ms))
        return np.arange(first, self.next_id, dtype=np.int64)

    def roll(self, limit: int) -> np.ndarray:
        """Row numbers to remove so that only the newest ``limit`` rows stay."""
        new_floor = self.next_id - limit
        if new_floor <= self.floor:
            return _NO_IDS
        ids = np.arange(self.floor, new_floor, dtype=np.int64)
        if len(self._gone):
            below = self._gone[self._gone < new_floor]
            ids = np.setdiff1d(ids, below, assume_unique=True)
            self._gone = self._gone[self._gone >= new_floor]
        self.floor = new_floor
        return ids

    def expire(self, cutoff_ms: int) -> np.ndarray:
        """Row numbers of the rows older than ``cutoff_ms``; they are forgotten here."""
        self._seal()
        expired = []
        kept = []
        for times, ids, top in self._chunks:
            if top < self.floor:  # every row of the chunk is gone already (the limit)
                continue
            split = int(np.searchsorted(times, cutoff_ms, side="left"))
            if split:
                expired.append(ids[:split])
            if split == len(times):
                continue
            if split:
                times, ids = times[split:], ids[split:]
                top = int(ids.max())
            kept.append((times, ids, top))
        self._chunks = kept
        if not expired:
            return _NO_IDS
        out = np.concatenate(expired)
        out = out[out >= self.floor]
        self._forget(out)
        return out

    def _seal(self) -> None:
        """The batches recorded since the last tick as one chunk sorted by time."""
        if not self._recent:
            return
        first = self._recent[0][0]
        times = np.concatenate([t for _, t in self._recent])
        self._recent = []
        # Numbers are handed out in sequence: the batches since the last tick are one run.
        order = np.argsort(times, kind="stable")
        ids = np.arange(first, first + len(times), dtype=np.int64)
        self._chunks.append((times[order], ids[order], first + len(times) - 1))

    def _forget(self, expired: np.ndarray) -> None:
        gone = np.union1d(self._gone, expired)
        # Expired rows that continue the floor's run need no memory: raise the floor past them.
        run = np.arange(self.floor, self.floor + len(gone), dtype=np.int64)
        mismatch = np.flatnonzero(gone != run)
        leading = int(mismatch[0]) if len(mismatch) else len(gone)
        self.floor += leading
        self._gone = gone[leading:]


class KeyLog:
    """The keys of an indexed table, each with the time (epoch ms) its row ages from."""

    def __init__(self, key_type: pa.DataType) -> None:
        self.key_type = key_type
        self._settled = pa.table(
            {"key": pa.array([], key_type), "ts": pa.array([], pa.int64())}
        )  # sorted by ts, one entry per live key
        self._recent: list[pa.Table] = []  # (key, ts, alive) in the order they were applied
        self._recent_rows = 0

    def __len__(self) -> int:
        """Entries held (live keys, plus operations not folded in yet)."""
        return self._settled.num_rows + self._recent_rows

    def record(
        self, keys: pa.Array | None, times_ms: np.ndarray | None, removed: pa.Array | None
    ) -> None:
        """A batch applied: upserts of ``keys`` at these times, then removals of ``removed``."""
        parts = []
        if keys is not None and len(keys):
            parts.append(
                pa.table(
                    {
                        "key": _plain(keys, self.key_type),
                        "ts": pa.array(times_ms, pa.int64()),
                        "alive": pa.array(np.ones(len(keys), dtype=bool)),
                    }
                )
            )
        if removed is not None and len(removed):
            parts.append(
                pa.table(
                    {
                        "key": _plain(removed, self.key_type),
                        "ts": pa.array(np.zeros(len(removed), dtype=np.int64)),
                        "alive": pa.array(np.zeros(len(removed), dtype=bool)),
                    }
                )
            )
        for part in parts:
            self._recent.append(part)
            self._recent_rows += part.num_rows

    def expire(self, cutoff_ms: int) -> pa.Array:
        """Keys whose row is older than ``cutoff_ms``; they are forgotten here."""
        recent = pa.concat_tables(self._recent) if self._recent else None
        if recent is not None and self._must_fold(recent, cutoff_ms):
            self._fold(recent)
            recent = None
        settled = self._settled
        times = settled.column("ts").to_numpy()
        split = int(np.searchsorted(times, cutoff_ms, side="left"))
        if not split:
            return pa.array([], self.key_type)
        candidates = settled.column("key").slice(0, split).combine_chunks()
        self._settled = settled.slice(split)
        if recent is not None:
            # A key changed since it settled lives on in the recent operations (or is removed).
            changed = pc.is_in(candidates, value_set=recent.column("key"), skip_nulls=False)
            candidates = candidates.filter(pc.invert(changed))
        return candidates

    def _must_fold(self, recent: pa.Table, cutoff_ms: int) -> bool:
        if recent.num_rows >= max(self._settled.num_rows // 2, FOLD_MIN_ROWS):
            return True
        alive = recent.filter(recent.column("alive"))
        if not alive.num_rows:
            return False
        oldest = pc.min(alive.column("ts")).as_py()
        return oldest is not None and oldest < cutoff_ms

    def _fold(self, recent: pa.Table) -> None:
        """Settled keys and recent operations as one: the last operation per key, live ones."""
        settled = self._settled.append_column(
            "alive", pa.array(np.ones(self._settled.num_rows, dtype=bool))
        )
        everything = pa.concat_tables([settled, recent]).combine_chunks()
        ranked = everything.append_column(
            "rank", pa.array(np.arange(everything.num_rows, dtype=np.int64))
        )
        last = ranked.group_by("key", use_threads=False).aggregate([("rank", "max")])
        winners = everything.take(last.column("rank_max"))
        winners = winners.filter(winners.column("alive"))
        order = pc.sort_indices(winners, sort_keys=[("ts", "ascending")])
        self._settled = winners.take(order).select(["key", "ts"])
        self._recent = []
        self._recent_rows = 0


def _plain(keys: pa.Array | pa.ChunkedArray, key_type: pa.DataType) -> pa.Array:
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if keys.type != key_type:
        keys = keys.cast(key_type)
    return keys
