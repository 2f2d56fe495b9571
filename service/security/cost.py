"""What a client's view or serialisation request will cost the engine, priced before it runs.

Every view lives inside the table it reads: the engine builds it when asked,
then recomputes it inside every update of that table, on the thread applying
Kafka batches. So a view's cost is paid again and again, by every reader of the
table. The guard prices each new view in *cells*, an estimate of what the
engine must hold and recompute for it, and refuses a view (or a session's set
of views) past the configured budget. Measured on perspective 4.3.0, 2 cores,
a 300k-row indexed table (the README's security section has the table):

* every view keeps an index over the table's rows: ``rows`` cells (a flat
  view of 300k rows: 0.5 s to build, +0.05 s per update);
* an expression column is computed over every row and kept: ``rows`` cells
  per numeric expression; a string-valued one builds new strings for every
  row on every update (one ``concat``: 1.4 s to build, +0.3 s per update) and
  counts ``STRING_EXPRESSION_WEIGHT`` times as much. Their types come from the
  engine's expression validator, which parses and computes nothing (0.6 ms);
* a pivot (group_by and/or split_by) materialises one aggregate per output
  row, split-by value and column: ``(rows_out + 1) * (splits + 1) *
  (columns + 1)`` cells, where ``rows_out`` is at most the product of the
  group_by columns' distinct counts and at most the table's rows, and
  ``splits`` the same for split_by (distinct counts: service/cardinality.py;
  a column of unknown cardinality or an expression counts as unique). A
  split_by on 13 values of a 300k-row table: 25 M cells (7 s, 520 MB, +1.4 s
  per update); a group_by on a unique column: 1.8 M cells (3.2 s, 290 MB).

Serialisation (``to_arrow``, ``to_csv``, ``to_columns``, ...) is priced as
the cells of the viewport asked for, whose default is the whole view.

This module holds no engine: facts about a table come through
:class:`TableFacts`, so the pricing is unit-tested with made-up tables.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from service.security import messages
from service.security.protocol import (
    CONFIG_COLUMNS,
    CONFIG_COLUMNS_LIST,
    CONFIG_EXPRESSIONS,
    CONFIG_GROUP_BY,
    CONFIG_SPLIT_BY,
)
from service.security.refusals import (
    EXPRESSION_TOO_LONG,
    SERIALIZATION_TOO_LARGE,
    SESSION_TOO_LARGE,
    TOO_MANY_EXPRESSIONS,
    TOO_MANY_PIVOT_COLUMNS,
    VIEW_TOO_LARGE,
    Refused,
)
from service.security.wire import LENGTH_DELIMITED, fields

STRING_EXPRESSION_WEIGHT = 10
STRING = "string"


@dataclass(frozen=True)
class CostLimits:
    """The ``server:`` settings that bound what one client may make the engine do."""

    max_expressions_per_view: int = 10
    max_expression_length: int = 1000
    max_pivot_columns: int = 5
    max_view_cells: int = 2_000_000
    max_session_cells: int = 10_000_000
    max_serialized_cells: int = 1_000_000


class TableFacts(Protocol):
    """What the pricing needs to know about a hosted table (see service/tables.py)."""

    def reading(self, name: str) -> AbstractContextManager[None]:
        """Held around the engine calls of a client's request that only reads the table."""
        ...

    def writing(self, name: str) -> AbstractContextManager[None]:
        """Held around the engine calls of a request that takes the table's write lock."""
        ...

    def rows_now(self, name: str) -> int: ...

    def columns(self, name: str) -> list[str]: ...

    def distinct_bound(self, name: str, column: str) -> int | None: ...

    def expression_types(self, name: str, expressions: dict[str, str]) -> dict[str, str]: ...


@dataclass
class ViewShape:
    """The parts of a ViewConfig that decide its cost."""

    group_by: list[str] = field(default_factory=list)
    split_by: list[str] = field(default_factory=list)
    columns: list[str] | None = None  # None: the default, every column
    expressions: dict[str, str] = field(default_factory=dict)


def view_shape(config: bytes) -> ViewShape:
    """Read a ViewConfig the schema validator already accepted (so it decodes)."""
    shape = ViewShape()
    for f in fields(config):
        if f.wire_type != LENGTH_DELIMITED:
            continue
        payload = config[f.value : f.end]
        if f.number == CONFIG_GROUP_BY:
            shape.group_by.append(messages.text(config, f))
        elif f.number == CONFIG_SPLIT_BY:
            shape.split_by.append(messages.text(config, f))
        elif f.number == CONFIG_COLUMNS:
            for part in fields(payload):
                if part.number == CONFIG_COLUMNS_LIST:
                    listing = payload[part.value : part.end]
                    shape.columns = [messages.text(listing, c) for c in fields(listing)]
        elif f.number == CONFIG_EXPRESSIONS:
            name, expression = messages.map_entry(payload)
            shape.expressions[name] = expression
    return shape


def check_expressions(expressions: dict[str, str], limits: CostLimits) -> None:
    """Count and length of a view's (or a validation request's) expressions."""
    if len(expressions) > limits.max_expressions_per_view:
        raise Refused(
            TOO_MANY_EXPRESSIONS,
            f"{len(expressions)} expressions in one request, more than "
            f"server.max_expressions_per_view ({limits.max_expressions_per_view})",
        )
    for name, text in expressions.items():
        if len(text) > limits.max_expression_length or len(name) > limits.max_expression_length:
            raise Refused(
                EXPRESSION_TOO_LONG,
                f"expression {name[:40]!r} is {max(len(text), len(name))} characters long, "
                f"more than server.max_expression_length ({limits.max_expression_length})",
            )


def view_cells(table: str, shape: ViewShape, facts: TableFacts, limits: CostLimits) -> int:
    """The view's price in cells; raises :class:`Refused` past the per-view limits."""
    check_expressions(shape.expressions, limits)
    for kind, names in (("group_by", shape.group_by), ("split_by", shape.split_by)):
        if len(names) > limits.max_pivot_columns:
            raise Refused(
                TOO_MANY_PIVOT_COLUMNS,
                f"{kind} of {len(names)} columns, more than server.max_pivot_columns "
                f"({limits.max_pivot_columns})",
            )
    rows = facts.rows_now(table)
    cells = rows + rows * _expression_weight(table, shape.expressions, facts)
    if shape.group_by or shape.split_by:
        grouped = (
            _combinations(table, shape.group_by, shape, rows, facts) if shape.group_by else rows
        )
        splits = _combinations(table, shape.split_by, shape, rows, facts) if shape.split_by else 0
        if shape.columns is not None:
            columns = len(shape.columns)
        else:
            columns = len(facts.columns(table)) + len(shape.expressions)
        cells += (grouped + 1) * (splits + 1) * (columns + 1)
    if cells > limits.max_view_cells:
        raise Refused(
            VIEW_TOO_LARGE,
            f"this view of {table!r} would hold about {cells:,} cells ({_describe(shape)} over "
            f"{rows:,} rows), more than server.max_view_cells ({limits.max_view_cells:,})",
        )
    return cells


def check_session(cells: int, held: int, limits: CostLimits) -> None:
    """A new view of ``cells`` on top of the ``held`` cells of the session's live views."""
    if held + cells > limits.max_session_cells:
        raise Refused(
            SESSION_TOO_LARGE,
            f"this session's views would hold about {held + cells:,} cells, more than "
            f"server.max_session_cells ({limits.max_session_cells:,}); delete some views first",
        )


def check_serialization(
    kind: str,
    start_row: int,
    end_row: int,
    start_col: int,
    end_col: int,
    limits: CostLimits,
) -> None:
    """A ``view_to_*`` request for rows ``start_row:end_row`` and columns ``start_col:end_col``."""
    cells = max(0, end_row - start_row) * max(0, end_col - start_col)
    if cells > limits.max_serialized_cells:
        raise Refused(
            SERIALIZATION_TOO_LARGE,
            f"{kind} of {end_row - start_row:,} rows x {end_col - start_col:,} columns "
            f"({cells:,} cells) is more than server.max_serialized_cells "
            f"({limits.max_serialized_cells:,}) in one request; ask for a viewport "
            "(start_row/end_row) and page through",
        )


def _expression_weight(table: str, expressions: dict[str, str], facts: TableFacts) -> int:
    if not expressions:
        return 0
    types = facts.expression_types(table, expressions)
    # An expression the engine rejects makes it refuse the whole view: price it as a number.
    return sum(STRING_EXPRESSION_WEIGHT if types.get(n) == STRING else 1 for n in expressions)


def _combinations(
    table: str, names: list[str], shape: ViewShape, rows: int, facts: TableFacts
) -> int:
    """At most how many distinct combinations of ``names`` the table's rows hold."""
    bounds = []
    for name in names:
        bound = None if name in shape.expressions else facts.distinct_bound(table, name)
        bounds.append(rows if bound is None else min(bound, rows))
    return min(rows, math.prod(bounds))


def _describe(shape: ViewShape) -> str:
    parts = []
    if shape.group_by:
        parts.append(f"group_by {shape.group_by}")
    if shape.split_by:
        parts.append(f"split_by {shape.split_by}")
    if shape.expressions:
        parts.append(f"{len(shape.expressions)} expressions")
    return ", ".join(parts) or "a flat view"
