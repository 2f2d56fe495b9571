"""Derived tables: ``from: SOURCE`` plus a ``view:`` over it, and the plan that serves one.

A derived table is the live result of a grouped Perspective view over another
hosted table: one row per group, its columns the ``group_by`` columns followed
by the view's ``columns`` under those same names. This module checks a view
against its source's columns (:meth:`DerivedViewConfig.problems`) and, once
the source's column types are known, asks Perspective itself what the result
looks like (:func:`plan_view`), so a view the engine would refuse is an error
in ``livetables check``, not at start-up.

Two engine facts shape the plan (perspective 4.3.0, measured on a 500k-row
source, 1000-row updates):

* A grouped view is recomputed inside every update of its source. For ``sum``,
  ``count``, ``last``, ``high``, ``low`` and the ``pct sum`` aggregates that
  costs a few ms (only the changed groups are touched); ``avg``/``mean``,
  ``min``, ``max``, ``first``, ``median``, ``distinct count`` and the rest
  re-read every row of every changed group: 200-400 ms per update, and any
  expression column does the same to the whole view. So an ``avg`` (or
  ``mean``) is computed as ``sum`` over a ``count`` of the non-null values,
  the count from a second view filtered on ``is not null`` (filters are
  incremental): the same numbers at the cost of two cheap views.
* A Perspective ``integer`` column holds 32 bits, while a view sums integers in
  64: a sum-like aggregate of an integer column is published as ``float``
  (exact up to 2^53) rather than silently wrapping around.

Group keys: a table indexed on its single ``group_by`` column when that column
is a string, integer or float; otherwise (several columns, a boolean or a date)
on a synthetic string column :data:`KEY_COLUMN`, which clients see in the
table's schema but pages leave out of their default columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import Field

from service.config.base import Strict

#: The synthetic index of a derived table whose groups need more than one column.
KEY_COLUMN = "__key__"

#: Column types a derived table may be indexed on directly.
SIMPLE_KEY_TYPES = frozenset({"string", "integer", "float"})  # no boolean index in 4.3.0

# What perspective 4.3.0 accepts per column type (tests/unit/test_derived_plan.py asks it).
TEXT_AGGREGATES = frozenset(
    {
        "any",
        "count",
        "distinct count",
        "dominant",
        "first",
        "join",
        "last",
        "last by index",
        "median",
        "unique",
    }
)
NUMBER_AGGREGATES = TEXT_AGGREGATES - {"join"} | {
    "abs sum",
    "avg",
    "high",
    "high minus low",
    "last minus first",
    "low",
    "max",
    "mean",
    "min",
    "pct sum grand total",
    "pct sum parent",
    "stddev",
    "sum",
    "sum abs",
    "sum not null",
    "var",
}
WEIGHTED_MEAN = "weighted mean"
ALL_AGGREGATES = TEXT_AGGREGATES | NUMBER_AGGREGATES | {WEIGHTED_MEAN}
NUMBER_TYPES = frozenset({"integer", "float"})

#: Aggregates that only touch the changed groups when the source changes (see above).
INCREMENTAL_AGGREGATES = frozenset(
    {"sum", "count", "last", "high", "low", "pct sum parent", "pct sum grand total", "avg", "mean"}
)
#: Averages, computed as a sum over a count of the values that are not null.
AVERAGES = frozenset({"avg", "mean"})
#: Aggregates of an integer column that may leave 32 bits: published as float.
WIDENED = frozenset(
    {"sum", "sum abs", "abs sum", "sum not null", "last minus first", "high minus low"}
)

FILTER_OPERATORS = frozenset(
    {
        "==",
        "!=",
        "<",
        ">",
        "<=",
        ">=",
        "begins with",
        "contains",
        "ends with",
        "in",
        "not in",
        "is null",
        "is not null",
    }
)
UNARY_OPERATORS = frozenset({"is null", "is not null"})


def _default_aggregate(kind: str) -> str:
    return "sum" if kind in NUMBER_TYPES else "count"


class DerivedViewConfig(Strict):
    """``tables.NAME.view``: what a derived table computes over its source."""

    group_by: list[str] = Field(min_length=1)
    columns: list[str] = Field(min_length=1)
    aggregates: dict[str, str | list[str]] = Field(default_factory=dict)
    filter: list[list[Any]] = Field(default_factory=list)
    expressions: dict[str, str] = Field(default_factory=dict)

    def output_names(self) -> list[str]:
        """The derived table's columns: the group_by columns, then the view's."""
        return [*self.group_by, *self.columns]

    def problems(self, source: str, columns: Mapping[str, str | None], path: str) -> list[str]:
        """Names this view uses that its source lacks, and aggregates its column types refuse.

        ``columns`` maps the source's columns to their types (None while unknown);
        each problem is ``key.path: reason``.
        """
        errors = [f"{path}.{problem}" for problem in self._shape_problems()]
        clashes = sorted(set(self.expressions) & set(columns))
        errors.extend(
            f"{path}.expressions.{name}: {source!r} already has a column of that name"
            for name in clashes
        )
        known = set(columns) | set(self.expressions)
        listing = ", ".join(sorted(columns))

        def check(where: str, name: Any) -> None:
            if name not in known:
                errors.append(
                    f"{path}.{where}: unknown column {name!r}; columns of {source!r} are: {listing}"
                )

        for i, name in enumerate(self.group_by):
            check(f"group_by.{i}", name)
        for i, name in enumerate(self.columns):
            check(f"columns.{i}", name)
        for i, item in enumerate(self.filter):
            check(f"filter.{i}", item[0])
            kind = columns.get(item[0]) if isinstance(item[0], str) else None
            if kind is not None and len(item) == 3 and item[1] in FILTER_OPERATORS:
                problem = _filter_value_problem(kind, item[1], item[2])
                if problem:
                    errors.append(f"{path}.filter.{i}: {problem}")
        for column, aggregate in self.aggregates.items():
            kind = columns.get(column)
            if column not in columns or kind is None:
                continue  # an expression's type, or one not known yet: Perspective checks it
            name = aggregate if isinstance(aggregate, str) else aggregate[0]
            if _aggregate_shape(aggregate):
                continue
            numeric = kind in NUMBER_TYPES
            allowed = NUMBER_AGGREGATES | {WEIGHTED_MEAN} if numeric else TEXT_AGGREGATES
            if name not in allowed:
                errors.append(
                    f"{path}.aggregates.{column}: {name!r} does not apply to a {kind} column; "
                    f"it takes: {', '.join(sorted(allowed))}"
                )
            if not isinstance(aggregate, str):
                check(f"aggregates.{column}.1", aggregate[1])
        return errors

    def _shape_problems(self) -> list[str]:
        """What is wrong whatever the source: repeats, aggregates of no column, bad filters."""
        errors = []
        for key in ("group_by", "columns"):
            seen: set[str] = set()
            for i, name in enumerate(getattr(self, key)):
                if name in seen:
                    errors.append(f"{key}.{i}: {name!r} is listed twice")
                seen.add(name)
        for i, name in enumerate(self.columns):
            if name in self.group_by:
                errors.append(
                    f"columns.{i}: {name!r} is a group_by column (its value is the group's)"
                )
        for column, aggregate in self.aggregates.items():
            if column not in self.columns:
                errors.append(f"aggregates.{column}: not one of the view's columns")
            errors.extend(f"aggregates.{column}: {p}" for p in _aggregate_shape(aggregate))
        for i, item in enumerate(self.filter):
            if len(item) not in (2, 3) or not isinstance(item[0], str):
                errors.append(f"filter.{i}: expected [column, operator, value]")
            elif item[1] not in FILTER_OPERATORS:
                errors.append(
                    f"filter.{i}: unknown operator {item[1]!r}; known: "
                    + ", ".join(sorted(FILTER_OPERATORS))
                )
            elif len(item) == 2 and item[1] not in UNARY_OPERATORS:
                errors.append(f"filter.{i}: operator {item[1]!r} needs a value")
        return errors

    def aggregate_of(self, column: str, kind: str | None) -> str | list[str]:
        """The aggregate of ``column``: the configured one, or the engine's default for its type."""
        return self.aggregates.get(column, _default_aggregate(kind or "float"))


_VALUE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int, float),
    "float": (int, float),
    "boolean": (bool,),
    "date": (str, date),
    "datetime": (str, int, float, datetime),
}


def _filter_value_problem(kind: str, operator: str, value: Any) -> str | None:
    """Why ``value`` cannot be compared with a ``kind`` column, if it cannot."""
    if operator in UNARY_OPERATORS:
        return None
    values = value if operator in ("in", "not in") else [value]
    if operator in ("in", "not in") and not isinstance(value, list):
        return f"{operator!r} takes a list of values"
    accepted = _VALUE_TYPES[kind]
    for item in values:
        if isinstance(item, bool) and bool not in accepted:
            return f"{item!r} is not a {kind} value"
        if not isinstance(item, accepted):
            return f"{item!r} is not a {kind} value"
    return None


class ViewRefused(ValueError):
    """Perspective refused a derived table's view; ``where`` is the key under ``view``."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where


def _aggregate_shape(aggregate: str | list[str]) -> list[str]:
    if isinstance(aggregate, str):
        if aggregate == WEIGHTED_MEAN:
            return ["weighted mean takes a weight column: [weighted mean, COLUMN]"]
        if aggregate not in ALL_AGGREGATES:
            return [f"unknown aggregate {aggregate!r}; known: {', '.join(sorted(ALL_AGGREGATES))}"]
        return []
    if len(aggregate) != 2 or aggregate[0] != WEIGHTED_MEAN:
        return ["a list names a weighted mean: [weighted mean, COLUMN]"]
    return []


@dataclass(frozen=True)
class DerivedPlan:
    """How one derived table is computed from its source, resolved against the engine.

    ``main`` holds the keyword arguments of the grouped view whose rows become
    the table's rows; ``counts`` maps each averaged column to the arguments of
    the view counting its non-null values (the average is the main view's sum
    over that count).
    """

    source: str
    group_by: tuple[str, ...]
    columns: tuple[str, ...]
    schema: dict[str, str]
    key: str
    main: dict[str, Any]
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)
    recomputing: tuple[str, ...] = ()  # columns whose aggregate re-reads whole groups

    @property
    def engine_schema(self) -> dict[str, str]:
        """The hosted table's columns: the published ones, then the synthetic key if any."""
        if self.key == KEY_COLUMN:
            return {**self.schema, KEY_COLUMN: "string"}
        return dict(self.schema)


def key_column(view: DerivedViewConfig, schema: Mapping[str, str]) -> str:
    """The column a derived table is indexed on (see the module docstring)."""
    if len(view.group_by) == 1 and schema.get(view.group_by[0]) in SIMPLE_KEY_TYPES:
        return view.group_by[0]
    return KEY_COLUMN


def _filters(view: DerivedViewConfig) -> list[list[Any]]:
    # perspective-python takes [column, operator, value] triples, null for unary operators.
    return [list(item) if len(item) == 3 else [item[0], item[1], None] for item in view.filter]


def plan_view(
    source: str, view: DerivedViewConfig, source_schema: Mapping[str, str]
) -> DerivedPlan:
    """The plan of a derived table over a source with these column types.

    Perspective builds the view over an empty table of the source's columns (in
    a server of its own), so whatever it refuses (an expression that does not
    parse, an aggregate or a filter a column type does not take) raises
    :class:`ViewRefused` with the engine's reason; the column types come from the engine too.
    """
    import perspective  # the engine only for resolution: validation alone needs no engine

    server = perspective.Server()
    client = server.new_local_client()
    table = client.table(dict(source_schema), name="source")
    views = []
    try:
        expression_types: dict[str, str] = {}
        if view.expressions:
            checked = table.validate_expressions(dict(view.expressions))
            bad = checked.get("errors") or {}
            if bad:
                name, error = next(iter(bad.items()))
                message = error.get("error_message", error) if isinstance(error, dict) else error
                raise ViewRefused(f"expressions.{name}", str(message))
            expression_types = dict(checked.get("expression_schema", {}))
        types = {**source_schema, **expression_types}
        aggregates = {c: view.aggregate_of(c, types.get(c)) for c in view.columns}
        filters = _filters(view)
        common = {
            "group_by": list(view.group_by),
            "filter": filters,
            "expressions": dict(view.expressions),
            "group_rollup_mode": "flat",
        }
        declared = table.view(columns=list(view.columns), aggregates=aggregates, **common)
        views.append(declared)
        result_types = dict(declared.schema())
        schema = {c: types[c] for c in view.group_by}
        averaged = {
            c: a
            for c, a in aggregates.items()
            if isinstance(a, str) and a in AVERAGES and types.get(c) in NUMBER_TYPES
        }
        for column in view.columns:
            kind = result_types[column]
            aggregate = aggregates[column]
            if kind == "integer" and isinstance(aggregate, str) and aggregate in WIDENED:
                kind = "float"
            schema[column] = kind
        main = {
            "columns": list(view.columns),
            "aggregates": {c: ("sum" if c in averaged else a) for c, a in aggregates.items()},
            **common,
        }
        counts = {
            c: {
                **common,
                "columns": [c],
                "aggregates": {c: "count"},
                "filter": [*filters, [c, "is not null", None]],
            }
            for c in averaged
        }
        for arguments in (main, *counts.values()):
            views.append(table.view(**arguments))
    except perspective.PerspectiveError as exc:
        raise ViewRefused("", f"Perspective refuses the view: {_engine_message(exc)}") from None
    finally:
        for made in views:
            made.delete()
        table.delete()
    recomputing = tuple(
        c for c, a in aggregates.items() if not (isinstance(a, str) and a in INCREMENTAL_AGGREGATES)
    )
    if view.expressions:
        recomputing = tuple(view.columns)
    return DerivedPlan(
        source=source,
        group_by=tuple(view.group_by),
        columns=tuple(view.columns),
        schema=schema,
        key=key_column(view, schema),
        main=main,
        counts=counts,
        recomputing=recomputing,
    )


def _engine_message(exc: Exception) -> str:
    text = str(exc).strip()
    return text.removeprefix("Abort():").strip() or type(exc).__name__
