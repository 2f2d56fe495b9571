"""From the grouped views over a source to a derived table's rows, and what changed since.

:func:`result_rows` turns the Arrow output of the plan's views into rows of the
derived table (group columns renamed from Perspective's ``sym (Group by 1)``,
averages divided out, the synthetic key added, types cast to the table's).
:class:`GroupDiff` compares them with the rows of the previous refresh and keeps
only the groups that are new or whose values changed, plus the keys of groups
that vanished: the table update (and what replicas receive) grows with the
changed groups, not with the groups or the source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from service.config.derived import KEY_COLUMN, DerivedPlan

# Internal columns of a diff, never written to a table.
_DIFF_KEY = "__diff_key__"
_PRESENT = "__present__"


def read_ipc(frame: bytes) -> pa.Table:
    return pa.ipc.open_stream(frame).read_all()


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def group_keys(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """One string per row, equal exactly when the rows' values in ``columns`` are.

    Each value is written as its length, a colon and its text (``~`` for null),
    joined with ``|``: no value can make two different groups look alike.
    """
    parts = []
    for name in columns:
        text = pc.cast(_plain(table.column(name)), pa.string())
        length = pc.cast(pc.utf8_length(text), pa.string())
        parts.append(pc.fill_null(pc.binary_join_element_wise(length, text, ":"), "~"))
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "|")


def result_rows(
    plan: DerivedPlan, main: pa.Table, counts: Mapping[str, pa.Table], schema: pa.Schema
) -> pa.Table:
    """The derived table's rows from its views' output; ``schema`` is the table's (engine) one."""
    depth = len(plan.group_by)
    columns: dict[str, pa.Array] = {}
    for i, name in enumerate(plan.group_by):
        columns[name] = _plain(main.column(i))
    for name in plan.columns:
        columns[name] = _plain(main.column(name))
    if counts:
        keys = group_keys(pa.table({n: columns[n] for n in plan.group_by}), plan.group_by)
        for name, counted in counts.items():
            counted_groups = pa.table(
                {g: _plain(counted.column(i)) for i, g in enumerate(plan.group_by[:depth])}
            )
            where = pc.index_in(keys, value_set=group_keys(counted_groups, plan.group_by))
            count = pc.fill_null(pc.take(_plain(counted.column(name)), where), 0)
            total = pc.cast(columns[name], pa.float64())
            mean = pc.divide(total, pc.cast(count, pa.float64()))
            columns[name] = pc.if_else(pc.equal(count, 0), pa.scalar(None, pa.float64()), mean)
    if plan.key == KEY_COLUMN:
        columns[KEY_COLUMN] = group_keys(pa.table(columns), plan.group_by)
    arrays = [pc.cast(columns[field.name], field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


class GroupDiff:
    """The rows of the last refresh that reached the table, to compare the next one with."""

    def __init__(self, plan: DerivedPlan) -> None:
        self.group_by = list(plan.group_by)
        self.key = plan.key
        self._previous: pa.Table | None = None  # last rows, with their diff keys

    def changes(self, current: pa.Table) -> tuple[pa.Table | None, pa.Array | None, pa.Table]:
        """(rows new or changed, index values of vanished groups, state to :meth:`accept`)."""
        keyed = current.append_column(_DIFF_KEY, group_keys(current, self.group_by))
        previous = self._previous
        if previous is None or not previous.num_rows:
            return (current if current.num_rows else None), None, keyed
        values = [c for c in current.column_names if c != KEY_COLUMN]
        before = previous.select([_DIFF_KEY, *values]).append_column(
            _PRESENT, pa.array([True] * previous.num_rows)
        )
        joined = keyed.join(before, keys=_DIFF_KEY, join_type="left outer", right_suffix="__before")
        changed = pc.is_null(joined.column(_PRESENT))
        for name in values:
            after, was = joined.column(name), joined.column(f"{name}__before")
            differs = pc.or_kleene(
                pc.not_equal(after, was), pc.xor(pc.is_null(after), pc.is_null(was))
            )
            changed = pc.or_(changed, pc.fill_null(differs, False))
        rows = joined.filter(changed).select(current.column_names)
        gone = pc.invert(pc.is_in(previous.column(_DIFF_KEY), value_set=keyed.column(_DIFF_KEY)))
        vanished = previous.filter(gone).column(self.key).combine_chunks()
        return (
            rows.cast(current.schema) if rows.num_rows else None,
            vanished if len(vanished) else None,
            keyed,
        )

    def accept(self, state: pa.Table) -> None:
        """The table now holds these rows (the refresh that computed them was applied)."""
        self._previous = state

    def reset(self, held: pa.Table) -> None:
        """The table holds ``held`` (after a refresh the engine refused, say)."""
        self._previous = held.append_column(_DIFF_KEY, group_keys(held, self.group_by))
