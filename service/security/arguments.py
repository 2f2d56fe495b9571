"""What a request's body may ask of the engine, checked before the engine sees it.

Every body must match its schema (service/security/protocol.py) all the way
down. Then, per kind, the arguments the engine mishandles and the price of
what it asks (service/security/cost.py):

* tree depths and row indexes (``view_expand``, ``view_collapse``,
  ``view_set_depth``, a view's ``group_by_depth``, viewport bounds) are at
  most 2**31 - 1;
* a filter whose operator needs a value has one;
* a new view is priced in cells, against the per-view and the session's budget;
* expressions to validate are limited in number and length;
* a serialisation (``view_to_*``) is priced as the cells of its viewport, and a
  column range (``view_column_paths``) must lie within the view.

The last two need a fact only the engine knows, the view's dimensions: for
those the check returns a :data:`DimensionsCheck`, which the guard applies to
the engine's answer to a question of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.security import cost
from service.security.cost import CostLimits, TableFacts
from service.security.messages import (
    Request,
    SchemaError,
    filters_without_values,
    map_entry,
    message_fields,
    validate,
)
from service.security.protocol import (
    BODIES,
    COLUMN_PATHS_END,
    COLUMN_PATHS_START,
    CONFIG_GROUP_BY_DEPTH,
    MAKE_VIEW_CONFIG,
    MAX_ARGUMENT,
    TREE_KINDS,
    VALIDATE_EXPRESSIONS,
    VIEWPORT,
    VIEWPORT_END_COL,
    VIEWPORT_END_ROW,
    VIEWPORT_KINDS,
    VIEWPORT_START_COL,
    VIEWPORT_START_ROW,
)
from service.security.refusals import BAD_ARGUMENT, ENGINE_ERROR, MALFORMED, Refused
from service.security.wire import VARINT, Field, fields

# The kinds whose arguments are checked beyond their schema.
ARGUMENT_KINDS = (
    TREE_KINDS
    | VIEWPORT_KINDS
    | {
        "table_make_view",
        "table_validate_expr",
        "view_column_paths",
    }
)
# What a request needs the engine to tell first: the view's (rows, columns) -> a refusal or None.
DimensionsCheck = Callable[[int, int], Refused | None]


@dataclass(frozen=True, slots=True)
class Checked:
    """What the checks found: a new view's price, and what to check on the view's size."""

    cells: int = 0
    on_dimensions: DimensionsCheck | None = None


class ArgumentCheck:
    """The argument checks and prices of one session.

    ``facts`` is None in unit tests of the guard alone: nothing is priced then.
    ``priced(table)`` says whether a new view of ``table`` is priced (a table
    the session may not reach is refused anyway, without asking the engine);
    ``held_cells()`` is what the session's live views already hold.
    """

    def __init__(
        self,
        limits: CostLimits,
        facts: TableFacts | None,
        priced: Callable[[str], bool],
        held_cells: Callable[[], int],
    ) -> None:
        self.limits = limits
        self.facts = facts
        self.priced = priced
        self.held_cells = held_cells

    def check(self, frame: bytes, request: Request) -> Checked:
        """Raise :class:`Refused` for a body the engine mishandles or that costs too much."""
        name = request.kind.name
        payload = request.payload(frame)
        try:
            validate(payload, BODIES[name])
        except SchemaError as exc:
            raise Refused(MALFORMED, f"malformed {name} request: {exc}") from None
        if name not in ARGUMENT_KINDS:
            return Checked()
        body = message_fields(payload)
        if name in TREE_KINDS:
            _small_arguments(body)
        elif name in VIEWPORT_KINDS:
            viewport = _merged(payload, body, VIEWPORT)
            _small_arguments(list(fields(viewport)))
            return Checked(on_dimensions=self._serialization(name, viewport))
        elif name == "table_make_view":
            config = _merged(payload, body, MAKE_VIEW_CONFIG)
            _check_view_config(config)
            return Checked(cells=self._new_view(request.entity_id, config))
        elif name == "table_validate_expr":
            expressions = dict(
                map_entry(payload[f.value : f.end])
                for f in body
                if f.number == VALIDATE_EXPRESSIONS
            )
            cost.check_expressions(expressions, self.limits)
        elif name == "view_column_paths":
            _small_arguments(body)
            ends = {f.number: f.value for f in body}
            start, end = ends.get(COLUMN_PATHS_START), ends.get(COLUMN_PATHS_END)
            if start is not None or end is not None:
                return Checked(on_dimensions=_column_range(start, end))
        return Checked()

    def _new_view(self, table: str, config: bytes) -> int:
        if self.facts is None or not self.priced(table):
            return 0
        try:
            shape = cost.view_shape(config)
            cells = cost.view_cells(table, shape, self.facts, self.limits)
            cost.check_session(cells, self.held_cells(), self.limits)
        except Refused:
            raise
        except Exception as exc:  # the engine could not say (a table going away at shutdown)
            raise Refused(ENGINE_ERROR, f"cannot price a view of {table!r}: {exc}") from None
        return cells

    def _serialization(self, kind: str, viewport: bytes) -> DimensionsCheck | None:
        if self.facts is None:
            return None
        limits = self.limits
        bounds = {f.number: f.value for f in fields(viewport)}
        start_row = bounds.get(VIEWPORT_START_ROW, 0)
        start_col = bounds.get(VIEWPORT_START_COL, 0)
        end_row = bounds.get(VIEWPORT_END_ROW)
        end_col = bounds.get(VIEWPORT_END_COL)
        if end_row is not None and end_col is not None:
            try:  # an explicit viewport within the limit needs no question to the engine
                cost.check_serialization(kind, start_row, end_row, start_col, end_col, limits)
                return None
            except Refused:
                pass

        def within(rows: int, columns: int) -> Refused | None:
            last_row = rows if end_row is None else min(end_row, rows)
            last_col = columns if end_col is None else min(end_col, columns)
            try:
                cost.check_serialization(kind, start_row, last_row, start_col, last_col, limits)
            except Refused as refusal:
                return refusal
            return None

        return within


def _merged(payload: bytes, body: list[Field], number: int) -> bytes:
    """The message field ``number`` as the engine reads it: protobuf merges repeats, and
    merging two messages is reading their concatenation."""
    return b"".join(payload[f.value : f.end] for f in body if f.number == number)


def _check_view_config(config: bytes) -> None:
    _small_arguments([f for f in fields(config) if f.number == CONFIG_GROUP_BY_DEPTH])
    missing = filters_without_values(config)
    if missing:
        column, operator = missing[0]
        raise Refused(BAD_ARGUMENT, f"the filter on {column!r} with {operator!r} needs a value")


def _small_arguments(body: list[Field]) -> None:
    for field in body:
        if field.wire_type == VARINT and field.value > MAX_ARGUMENT:
            raise Refused(
                BAD_ARGUMENT, f"argument {field.number} is {field.value}, more than {MAX_ARGUMENT}"
            )


def _column_range(start: int | None, end: int | None) -> DimensionsCheck:
    def within(_rows: int, columns: int) -> Refused | None:
        # The engine loops forever on a flat view when start is past the last column,
        # and divides by zero on a grouped view without columns.
        first = start or 0
        if columns == 0 or first > min(columns, columns if end is None else end):
            return Refused(
                BAD_ARGUMENT,
                f"columns {first}..{'' if end is None else end} are not a range of this "
                f"view's {columns} columns",
            )
        return None

    return within
