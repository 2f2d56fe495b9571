"""Upper bounds on the number of distinct values in each column of a hosted table.

A client's ``group_by`` or ``split_by`` makes the engine build one node per
distinct value (per combination, for several columns), and on a large table a
split or group on a near-unique column costs gigabytes and minutes. The guard
must know that *before* the engine builds the view, and asking the engine
itself costs as much as building it (a one-column group-by over 300k unique
strings took 3.5 s here). So the applier keeps, per column, the set of values
it has ever applied, vectorised per batch:

* ``pyarrow.compute.unique`` over the batch's column (C++, ~8 ns a row, GIL
  released), then ``is_in`` against the known values, so Python touches only
  arrays, never a value;
* a column that passes ``TRACKED_VALUES`` distinct values is *saturated*: it
  is treated as unique (bounded by the row count) and never looked at again,
  so a unique column costs one batch, and a tracked column at most
  ``TRACKED_VALUES`` Python objects.

The set only grows (removed or overwritten values stay in it), so it is an
upper bound, which is what a guard needs: it may over-estimate a view, never
under-estimate it.
"""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.compute as pc

# Past this many distinct values a column counts as unique. That only matters for tables
# of more rows than server.max_view_cells allows a unique group-by (with the defaults,
# ~330k rows for 5 columns); the bound keeps the memory per column small and the cost per
# batch low. Measured, 10k-row batches of 6 columns (3 strings of 2, 10 and 500 values,
# an integer of 3000, two unique): ~60 ns per row, against ~1 us per row that the
# Perspective update itself costs.
TRACKED_VALUES = 4096


class DistinctValues:
    """Distinct-value bounds for every column of one table, fed one applied batch at a time."""

    def __init__(self, columns: list[str]) -> None:
        self._known: dict[str, pa.Array | None] = {name: None for name in columns}
        self._saturated: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, rows: pa.Table) -> None:
        """Account for a batch of rows the table has just applied."""
        for name in rows.column_names:
            if name in self._saturated or name not in self._known:
                continue
            try:
                self._observe(name, rows.column(name))
            except (pa.ArrowException, ValueError, TypeError):
                # A type the kernels do not take: count the column as unique (an upper bound).
                with self._lock:
                    self._saturated.add(name)
                    self._known[name] = None

    def _observe(self, name: str, column: pa.ChunkedArray) -> None:
        fresh = pc.unique(column)
        known = self._known[name]
        if known is not None and len(fresh):
            fresh = fresh.filter(pc.invert(pc.is_in(fresh, value_set=known)))
        if not len(fresh):
            return
        size = len(fresh) + (0 if known is None else len(known))
        with self._lock:
            if size > TRACKED_VALUES:
                self._saturated.add(name)
                self._known[name] = None
            elif known is None:
                self._known[name] = fresh
            else:
                self._known[name] = pa.concat_arrays([known, fresh])

    def bound(self, column: str) -> int | None:
        """At most this many distinct values, or None if unknown (saturated or not a column)."""
        with self._lock:
            if column in self._saturated or column not in self._known:
                return None
            known = self._known[column]
            return 0 if known is None else len(known)
