"""The read-only guard: every Perspective request a websocket client sends is checked here.

Perspective's own server lets any client update, clear, replace, remove or delete
any hosted table, and host new ones. livetables' tables are fed from Kafka; a
client must not change them unless the config marks the table ``editable``. The
guard decodes each request frame's envelope (the ``Request`` message of
perspective's ``perspective.proto``, as of perspective 4.3.0) and decides:

* reads, views, expressions and view deletion pass;
* writes (update, replace and clear, remove) pass only for an ``editable``
  table; deleting a hosted table and hosting a new one (make_table) are refused
  for every table: the tables are the configuration's, fed from Kafka, and a
  deleted one could not be fed again;
* a request about a table the client may not read, or about a view this session
  did not create, is refused; view ids are the server's (service/security/views.py),
  so sessions can neither collide on nor reach each other's views;
* per-session limits: live views, callbacks, request size, and what views and
  serialisations may cost the engine (service/security/cost.py);
* anything that does not decode, or a request kind this version does not know,
  is refused. The engine is never handed a frame the guard could not read (an
  empty frame aborts the whole process inside perspective).

A refused request gets a ``Response`` carrying a ``ServerError`` for its
``msg_id``, so a stock client raises an error naming the table and the reason.
Past ``max_rejected`` refusals the session should be closed (``Verdict.close``).

The guard holds no socket and no engine: it maps bytes to verdicts, so it is
unit-tested without a server; facts about the tables (row counts, distinct
values, expression types) come through :class:`~service.security.cost.TableFacts`.
It also watches the session's responses (from any thread), to forget views the
engine refused to create, to give views back the client's names, and to hide
tables a restricted client may not read from hosted-table listings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from service.config import LivetablesConfig
from service.security import cost, schema
from service.security.cost import CostLimits, OverLimit, TableFacts
from service.security.views import (
    SessionView,
    make_view_body,
    request_for_engine,
    response_for_client,
    server_view_name,
)
from service.security.wire import (
    LENGTH_DELIMITED,
    VARINT,
    Field,
    WireError,
    bytes_field,
    fields,
    string_field,
    utf8,
    varint_field,
)

# -- perspective.proto (4.3.0): the parts the guard reads ------------------------

REQUEST_MSG_ID = 1
REQUEST_ENTITY_ID = 2
RESPONSE_MSG_ID = 1
RESPONSE_ENTITY_ID = 2
RESPONSE_HOSTED_TABLES = 4  # GetHostedTablesResp { repeated HostedTable table_infos = 1 }
RESPONSE_SERVER_ERROR = 50  # ServerError { string message = 1; StatusCode status_code = 2 }
HOSTED_TABLE_ENTITY_ID = 1  # HostedTable { string entity_id = 1; ... }
MAKE_VIEW_VIEW_ID = 1  # TableMakeViewReq { string view_id = 1; ViewConfig config = 2 }
MAKE_VIEW_CONFIG = 2
VIEW_CONFIG_GROUP_BY_DEPTH = 9  # ViewConfig { ...; optional uint32 group_by_depth = 9 }
GET_HOSTED_SUBSCRIBE = 1  # GetHostedTablesReq { bool subscribe = 1 }
COLUMN_PATHS_START, COLUMN_PATHS_END = 1, 2  # ViewColumnPathsReq { start_col = 1; end_col = 2 }
VIEWPORT = 1  # ViewTo*Req { ViewPort viewport = 1; ... }
RESPONSE_VIEW_DIMENSIONS = 12  # ViewDimensionsResp { ...; num_view_rows = 3; num_view_columns = 4 }
DIMENSIONS_VIEW_ROWS = 3
DIMENSIONS_VIEW_COLUMNS = 4
VIEWPORT_START_ROW, VIEWPORT_START_COL, VIEWPORT_END_ROW, VIEWPORT_END_COL = 1, 2, 3, 4
VALIDATE_EXPRESSIONS = 1  # TableValidateExprReq { map<string, string> column_to_expr = 1 }
VIEWPORT_KINDS = frozenset(
    {
        "view_to_arrow",
        "view_to_csv",
        "view_to_columns_string",
        "view_to_rows_string",
        "view_to_ndjson_string",
    }
)
# The engine reads row and column numbers as signed 32-bit integers in places:
# a uint32 of 2**31 or more becomes negative there and crashes the process.
MAX_ARGUMENT = (1 << 31) - 1
# The msg_id of the guard's own requests (probes); refused from clients.
PROBE_MSG_ID = (1 << 32) - 1

CLIENT = "client"  # about the server as a whole (entity_id unused)
TABLE = "table"  # entity_id names a hosted table
VIEW = "view"  # entity_id names a view
NEW_TABLE = "new_table"  # entity_id names the table to create


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    scope: str
    writes: bool = False  # changes or deletes the hosted table
    verb: str = ""  # how a refusal names the operation


KINDS: dict[int, Kind] = {
    3: Kind("get_features", CLIENT),
    4: Kind("get_hosted_tables", CLIENT),
    37: Kind("remove_hosted_tables_update", CLIENT),
    # A port only tags later updates; <perspective-viewer> asks for one when it loads a
    # table in server mode. The updates themselves are what the guard refuses.
    5: Kind("table_make_port", TABLE),
    6: Kind("table_make_view", TABLE),
    7: Kind("table_schema", TABLE),
    8: Kind("table_size", TABLE),
    9: Kind("table_validate_expr", TABLE),
    10: Kind("view_column_paths", VIEW),
    11: Kind("view_delete", VIEW),
    12: Kind("view_dimensions", VIEW),
    13: Kind("view_expression_schema", VIEW),
    14: Kind("view_get_config", VIEW),
    15: Kind("view_schema", VIEW),
    16: Kind("view_to_arrow", VIEW),
    17: Kind("server_system_info", CLIENT),
    18: Kind("view_collapse", VIEW),
    19: Kind("view_expand", VIEW),
    20: Kind("view_get_min_max", VIEW),
    21: Kind("view_on_update", VIEW),
    22: Kind("view_remove_on_update", VIEW),
    23: Kind("view_set_depth", VIEW),
    24: Kind("view_to_columns_string", VIEW),
    25: Kind("view_to_csv", VIEW),
    26: Kind("view_to_rows_string", VIEW),
    36: Kind("view_to_ndjson_string", VIEW),
    27: Kind("make_table", NEW_TABLE, writes=True, verb="make_table"),
    28: Kind("table_delete", TABLE, writes=True, verb="delete"),
    29: Kind("table_on_delete", TABLE),
    30: Kind("table_remove_delete", TABLE),
    31: Kind("table_remove", TABLE, writes=True, verb="remove"),
    32: Kind("table_replace", TABLE, writes=True, verb="replace (or clear)"),
    33: Kind("table_update", TABLE, writes=True, verb="update"),
    34: Kind("view_on_delete", VIEW),
    35: Kind("view_remove_delete", VIEW),
}
KIND_NUMBERS = {kind.name: number for number, kind in KINDS.items()}
# Requests that take a table's write lock in the engine besides the writes above (checked
# in perspective 4.3.0's sources: registering or dropping a view's context, reshaping its
# tree). They take the write side of the table's gate.
ENGINE_WRITES = frozenset(
    {"table_make_view", "view_delete", "view_expand", "view_collapse", "view_set_depth"}
)
assert set(KIND_NUMBERS) == set(schema.BODIES), "every request kind needs its body schema"

# Callbacks a client may register: per view (on_update, on_delete), and per session
# (table on_delete, hosted-table subscriptions). Each one is engine state and a
# message per event; a client needs a handful.
MAX_CALLBACKS_PER_VIEW = 64
MAX_SESSION_CALLBACKS = 1024

# Refusal reasons: the label values of livetables_websocket_rejected_requests_total.
READ_ONLY = "read_only"
MAKE_TABLE = "make_table"
UNKNOWN_TABLE = "unknown_table"
FORBIDDEN_TABLE = "forbidden_table"
UNKNOWN_VIEW = "unknown_view"
TOO_MANY_VIEWS = "too_many_views"
TOO_MANY_CALLBACKS = "too_many_callbacks"
TOO_LARGE = "too_large"
BAD_ARGUMENT = "bad_argument"
MALFORMED = "malformed"
UNKNOWN_REQUEST = "unknown_request"
RATE_LIMITED = "rate_limited"
TOO_MANY_PENDING = "too_many_pending"
TABLE_DELETE = "table_delete"
ENGINE_ERROR = "engine_error"
REASONS = (
    READ_ONLY,
    TABLE_DELETE,
    MAKE_TABLE,
    UNKNOWN_TABLE,
    FORBIDDEN_TABLE,
    UNKNOWN_VIEW,
    TOO_MANY_VIEWS,
    TOO_MANY_CALLBACKS,
    TOO_LARGE,
    BAD_ARGUMENT,
    MALFORMED,
    UNKNOWN_REQUEST,
    RATE_LIMITED,
    TOO_MANY_PENDING,
    ENGINE_ERROR,
    *cost.REASONS,
)


@dataclass(frozen=True)
class GuardPolicy:
    """What every session of one server may do."""

    tables: frozenset[str]
    editable: frozenset[str]
    max_views: int = 100
    max_request_bytes: int = 1024 * 1024
    max_rejected: int = 100
    costs: CostLimits = dataclasses.field(default_factory=CostLimits)

    @classmethod
    def from_config(cls, config: LivetablesConfig) -> GuardPolicy:
        server = config.server
        return cls(
            tables=frozenset(config.tables),
            editable=frozenset(name for name, t in config.tables.items() if t.editable),
            max_views=server.max_views_per_session,
            max_request_bytes=server.max_request_bytes,
            max_rejected=server.max_rejected_requests,
            costs=CostLimits(
                max_expressions_per_view=server.max_expressions_per_view,
                max_expression_length=server.max_expression_length,
                max_pivot_columns=server.max_pivot_columns,
                max_view_cells=server.max_view_cells,
                max_session_cells=server.max_session_cells,
                max_serialized_cells=server.max_serialized_cells,
            ),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str | None = None
    response: bytes | None = None  # the error Response to send, if the msg_id is known
    close: bool = False  # the session went past its limits: close it
    forward: bytes | None = None  # what to hand the engine: the frame, view ids the server's

    @property
    def message(self) -> str | None:
        """The error text sent to the client (for logs and tests)."""
        if self.response is None:
            return None
        return _error_text(self.response)


ALLOW = Verdict(True)


@dataclass(slots=True)
class Request:
    """A request's envelope: msg_id, entity_id and the one request it carries."""

    msg_id: int | None = None
    entity_id: str = ""
    number: int | None = None  # field number of the oneof member
    body: Field | None = None
    view: SessionView | None = None  # the session's view it is about, once authorised


class Refused(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_request(frame: bytes, request: Request) -> None:
    """Fill ``request`` from a frame; raise :class:`Refused` unless it is unambiguous.

    Protobuf lets a field repeat (the last one wins) and a oneof hold several
    members (the last one wins); a client never needs either, and refusing them
    keeps the guard and the engine from reading one frame two ways.
    """
    seen: set[int] = set()
    try:
        for field in fields(frame):
            if field.number in seen:
                raise Refused(MALFORMED, f"field {field.number} given twice")
            seen.add(field.number)
            if field.number == REQUEST_MSG_ID:
                if field.wire_type != VARINT or field.value >= 1 << 32:
                    raise Refused(MALFORMED, "msg_id is not a uint32")
                request.msg_id = field.value
            elif field.number == REQUEST_ENTITY_ID:
                if field.wire_type != LENGTH_DELIMITED:
                    raise Refused(MALFORMED, "entity_id is not a string")
                request.entity_id = utf8(frame, field)
            elif field.number in KINDS:
                if request.number is not None:
                    raise Refused(MALFORMED, "more than one request in one message")
                if field.wire_type != LENGTH_DELIMITED:
                    raise Refused(MALFORMED, "the request is not a message")
                request.number, request.body = field.number, field
            else:
                raise Refused(UNKNOWN_REQUEST, f"unknown request field {field.number}")
    except WireError as exc:
        raise Refused(MALFORMED, f"not a Perspective request: {exc}") from None
    if request.number is None:
        raise Refused(MALFORMED, "no request in the message")


def _body_fields(frame: bytes, body: Field) -> list[Field]:
    payload = frame[body.value : body.end]
    try:
        return list(fields(payload))
    except WireError as exc:
        raise Refused(MALFORMED, f"malformed request body: {exc}") from None


def error_response(msg_id: int, entity_id: str, message: str) -> bytes:
    """A ``Response`` carrying a ``ServerError`` (status SERVER_ERROR) for ``msg_id``."""
    error = string_field(1, message)
    out = varint_field(RESPONSE_MSG_ID, msg_id) if msg_id else b""
    if entity_id:
        out += string_field(RESPONSE_ENTITY_ID, entity_id)
    return out + bytes_field(RESPONSE_SERVER_ERROR, error)


def _error_text(response: bytes) -> str | None:
    try:
        for field in fields(response):
            if field.number == RESPONSE_SERVER_ERROR:
                body = response[field.value : field.end]
                for inner in fields(body):
                    if inner.number == 1 and inner.wire_type == LENGTH_DELIMITED:
                        return utf8(body, inner)
    except WireError:
        return None
    return None


# What a request needs the engine to tell first: the view's (rows, columns) -> a refusal or None.
DimensionsCheck = Callable[[int, int], Refused | None]


class SessionGuard:
    """The guard of one websocket session.

    ``handle`` and ``check`` run for one frame at a time, in order (on the
    session's engine worker); ``outgoing`` runs on whichever thread the engine
    answers from, hence the lock around everything both touch.
    """

    def __init__(
        self,
        policy: GuardPolicy,
        can_read: Callable[[str], bool] | None = None,
        views_gauge: Any = None,
        facts: TableFacts | None = None,
    ) -> None:
        self.policy = policy
        self.can_read = can_read or (lambda _table: True)
        self.restricted = can_read is not None
        self.views_gauge = views_gauge
        self.facts = facts  # None: views and serialisations are not priced (unit tests only)
        self.views: dict[str, SessionView] = {}  # by the client's name
        self.rejected = 0
        self._session_callbacks = 0
        self._by_server_id: dict[str, str] = {}  # server view id -> client's name
        self._pending_views: dict[int, str] = {}  # msg_id of make_view -> client's name
        self._pending_deletes: dict[int, str] = {}  # msg_id of view_delete -> server view id
        self._lock = threading.Lock()
        self._closed = False
        # The engine's answer to the guard's own dimensions request (see handle()).
        self._probe_dimensions: tuple[int, int] | None = None
        self._probing = False
        self._dimensions_check: DimensionsCheck | None = None

    def handle(self, frame: bytes, forward: Callable[[bytes], None]) -> Verdict:
        """Check a frame and, if it is allowed, ``forward`` it (view ids translated) to the engine.

        A few requests need a fact only the engine knows: a column range is
        safe only within the view's width, a serialisation is priced by the
        view's size. For those the guard first forwards a probe (a dimensions
        request of its own, answered synchronously and never shown to the
        client) and decides on its answer.
        """
        # The engine calls below (pricing, probes, the request) use one table: they take
        # turns with its updates (service/engine.py, TableGate).
        with self._gate(frame):
            request = Request()
            verdict = self.check(frame, request)
            check, self._dimensions_check = self._dimensions_check, None
            if verdict.allowed and check is not None:
                assert request.view is not None
                dimensions = self._dimensions(request.view.server_id, forward)
                refusal = (
                    Refused(BAD_ARGUMENT, f"view {request.entity_id!r} has no dimensions")
                    if dimensions is None
                    else check(*dimensions)
                )
                if refusal is not None:
                    self._undo(request)
                    return self._refuse(request, refusal)
            if verdict.allowed:
                forward(verdict.forward if verdict.forward is not None else frame)
        return verdict

    def _gate(self, frame: bytes) -> AbstractContextManager[None]:
        """The table gate a request takes (a first look at it; ``check`` decides)."""
        request = Request()
        try:
            parse_request(frame, request)
        except Refused:
            return contextlib.nullcontext()
        assert request.number is not None
        kind = KINDS[request.number]
        table = None
        if kind.scope == TABLE and request.entity_id in self.policy.tables:
            table = request.entity_id
        elif kind.scope == VIEW:
            with self._lock:
                view = self.views.get(request.entity_id)
            table = None if view is None else view.table
        if self.facts is None or table is None:
            return contextlib.nullcontext()
        if kind.writes or kind.name in ENGINE_WRITES:
            return self.facts.writing(table)
        return self.facts.reading(table)

    def closing_turns(self) -> contextlib.ExitStack:
        """Write turns on every table this session has views on: closing it drops them.

        Taken in name order, so two sessions closing never wait for each other in a circle.
        """
        with self._lock:
            tables = sorted({view.table for view in self.views.values()})
        turns = contextlib.ExitStack()
        if self.facts is not None:
            for table in tables:
                turns.enter_context(self.facts.writing(table))
        return turns

    def refuse(self, frame: bytes, reason: str, message: str) -> Verdict:
        """Refuse a frame before reading it whole (rate and queue limits of the websocket)."""
        request = Request()
        _read_msg_id(frame, request)
        return self._refuse(request, Refused(reason, message))

    # -- requests ---------------------------------------------------------------

    def check(self, frame: bytes, request: Request | None = None) -> Verdict:
        request = request if request is not None else Request()
        self._dimensions_check = None
        try:
            if len(frame) > self.policy.max_request_bytes:
                _read_msg_id(frame, request)
                raise Refused(
                    TOO_LARGE,
                    f"request of {len(frame)} bytes is larger than the "
                    f"{self.policy.max_request_bytes} bytes allowed",
                )
            parse_request(frame, request)
            if request.msg_id is None:
                request.msg_id = 0  # proto3 leaves a zero out of the frame
            if request.msg_id == PROBE_MSG_ID:
                raise Refused(MALFORMED, "msg_id 4294967295 is reserved")
            # Arguments and price first: authorising a new view counts it.
            cells = self._check_arguments(frame, request)
            forward = self._authorise(frame, request, cells)
        except Refused as refusal:
            self._dimensions_check = None
            return self._refuse(request, refusal)
        return Verdict(True, forward=forward)

    def _check_arguments(self, frame: bytes, request: Request) -> int:
        """Refuse bodies the engine mishandles or that cost too much; a new view's price."""
        assert request.number is not None and request.body is not None
        name = KINDS[request.number].name
        payload = frame[request.body.value : request.body.end]
        try:
            schema.validate(payload, schema.BODIES[name])
        except schema.SchemaError as exc:
            raise Refused(MALFORMED, f"malformed {name} request: {exc}") from None
        if name in ("view_expand", "view_collapse", "view_set_depth"):
            _small_arguments(_body_fields(frame, request.body))
        elif name in VIEWPORT_KINDS:
            viewport: list[Field] = []
            for field in _body_fields(frame, request.body):
                if field.number == VIEWPORT:
                    viewport = _fields_of(payload, field)
            _small_arguments(viewport)
            self._price_serialization(name, {f.number: f.value for f in viewport})
        elif name == "table_make_view":
            for field in _body_fields(frame, request.body):
                if field.number == MAKE_VIEW_CONFIG:
                    config = payload[field.value : field.end]
                    depth = [f for f in fields(config) if f.number == VIEW_CONFIG_GROUP_BY_DEPTH]
                    _small_arguments(depth)
                    missing = schema.filters_without_values(config)
                    if missing:
                        column, operator = missing[0]
                        raise Refused(
                            BAD_ARGUMENT,
                            f"the filter on {column!r} with {operator!r} needs a value",
                        )
                    return self._price_view(request.entity_id, config)
            return self._price_view(request.entity_id, b"")
        elif name == "table_validate_expr":
            expressions = {}
            for field in _body_fields(frame, request.body):
                if field.number == VALIDATE_EXPRESSIONS:
                    entry = payload[field.value : field.end]
                    key, value = _map_entry(entry)
                    expressions[key] = value
            try:
                cost.check_expressions(expressions, self.policy.costs)
            except OverLimit as exc:
                raise Refused(exc.reason, exc.message) from None
        elif name == "view_column_paths":
            body = _body_fields(frame, request.body)
            _small_arguments(body)
            start = end = None
            for field in body:
                if field.number == COLUMN_PATHS_START:
                    start = field.value
                elif field.number == COLUMN_PATHS_END:
                    end = field.value
            if start is not None or end is not None:
                self._dimensions_check = _column_range_check(start, end)
        return 0

    def _price_view(self, table: str, config: bytes) -> int:
        if self.facts is None or table not in self.policy.tables or not self.can_read(table):
            return 0  # nothing to price, or refused by _authorise
        try:
            shape = cost.view_shape(config)
            cells = cost.view_cells(table, shape, self.facts, self.policy.costs)
            with self._lock:
                held = sum(view.cells for view in self.views.values())
            cost.check_session(cells, held, self.policy.costs)
        except OverLimit as exc:
            raise Refused(exc.reason, exc.message) from None
        except Exception as exc:  # the engine could not say (a table going away at shutdown)
            raise Refused(ENGINE_ERROR, f"cannot price a view of {table!r}: {exc}") from None
        return cells

    def _price_serialization(self, kind: str, viewport: dict[int, int]) -> None:
        if self.facts is None:
            return
        limits = self.policy.costs
        start_row = viewport.get(VIEWPORT_START_ROW, 0)
        start_col = viewport.get(VIEWPORT_START_COL, 0)
        end_row = viewport.get(VIEWPORT_END_ROW)
        end_col = viewport.get(VIEWPORT_END_COL)
        if end_row is not None and end_col is not None:
            try:  # an explicit viewport within the limit needs no question to the engine
                cost.check_serialization(kind, start_row, end_row, start_col, end_col, limits)
                return
            except OverLimit:
                pass

        def within(rows: int, columns: int) -> Refused | None:
            last_row = rows if end_row is None else min(end_row, rows)
            last_col = columns if end_col is None else min(end_col, columns)
            try:
                cost.check_serialization(kind, start_row, last_row, start_col, last_col, limits)
            except OverLimit as exc:
                return Refused(exc.reason, exc.message)
            return None

        self._dimensions_check = within

    def _dimensions(
        self, server_id: str, forward: Callable[[bytes], None]
    ) -> tuple[int, int] | None:
        """(rows, columns) of a view, asked of the engine by a request the client never sees."""
        probe = (
            varint_field(REQUEST_MSG_ID, PROBE_MSG_ID)
            + string_field(REQUEST_ENTITY_ID, server_id)
            + bytes_field(KIND_NUMBERS["view_dimensions"], b"")
        )
        with self._lock:
            self._probe_dimensions = None
            self._probing = True
        try:
            forward(probe)
        finally:
            with self._lock:
                dimensions, self._probe_dimensions = self._probe_dimensions, None
                self._probing = False
        return dimensions

    def _authorise(self, frame: bytes, request: Request, cells: int) -> bytes | None:
        """Check access; the frame to forward if it must change (view ids), else None."""
        assert request.number is not None and request.body is not None
        kind = KINDS[request.number]
        name = request.entity_id
        if kind.scope == TABLE:
            self._check_table(name)
            if kind.name == "table_delete":
                raise Refused(
                    TABLE_DELETE,
                    f"table {name!r} is hosted by the server: clients cannot delete tables",
                )
            if kind.writes and name not in self.policy.editable:
                raise Refused(
                    READ_ONLY,
                    f"table {name!r} is read-only: {kind.verb} requests are refused",
                )
            if kind.name == "table_make_view":
                return self._make_view(frame, request, cells)
            if kind.name == "table_on_delete":
                self._session_callback()
        elif kind.scope == NEW_TABLE:
            raise Refused(
                MAKE_TABLE,
                f"cannot host a new table {name!r}: clients read the tables the server hosts",
            )
        elif kind.scope == VIEW:
            with self._lock:
                view = self.views.get(name)
                if view is None:
                    self._dimensions_check = None
                    raise Refused(UNKNOWN_VIEW, f"no view {name!r} in this session")
                if kind.name in ("view_on_update", "view_on_delete"):
                    if view.callbacks >= MAX_CALLBACKS_PER_VIEW:
                        raise Refused(
                            TOO_MANY_CALLBACKS,
                            f"view {name!r} already has {view.callbacks} callbacks",
                        )
                    view.callbacks += 1
                elif kind.name == "view_delete":
                    self._forget_view(name, keep_name_until=request.msg_id)
            request.view = view
            return request_for_engine(
                frame, request.msg_id or 0, view.server_id, request.body.start, request.body.end
            )
        elif kind.name == "get_hosted_tables":
            subscribe = any(
                f.number == GET_HOSTED_SUBSCRIBE and f.wire_type == VARINT and f.value
                for f in _body_fields(frame, request.body)
            )
            if subscribe:
                self._session_callback()
        return None

    def _undo(self, request: Request) -> None:
        """A request refused after authorisation (on the engine's answer) changes nothing."""
        assert request.number is not None
        if KINDS[request.number].name in ("view_on_update", "view_on_delete") and request.view:
            with self._lock:
                request.view.callbacks -= 1

    def _check_table(self, name: str) -> None:
        if name not in self.policy.tables:
            raise Refused(UNKNOWN_TABLE, f"no table named {name!r}")
        if not self.can_read(name):
            raise Refused(FORBIDDEN_TABLE, f"table {name!r} is not available to this client")

    def _session_callback(self) -> None:
        if self._session_callbacks >= MAX_SESSION_CALLBACKS:
            raise Refused(TOO_MANY_CALLBACKS, "too many callbacks registered in this session")
        self._session_callbacks += 1

    def _make_view(self, frame: bytes, request: Request, cells: int) -> bytes:
        assert request.body is not None
        view_id = None
        body = frame[request.body.value : request.body.end]
        for field in _body_fields(frame, request.body):
            if field.number == MAKE_VIEW_VIEW_ID:
                if field.wire_type != LENGTH_DELIMITED or view_id is not None:
                    raise Refused(MALFORMED, "view_id must be one string")
                try:
                    view_id = utf8(body, field)
                except WireError as exc:
                    raise Refused(MALFORMED, str(exc)) from None
        if not view_id:
            raise Refused(MALFORMED, "a new view needs a view_id")
        assert request.msg_id is not None
        with self._lock:
            if view_id in self.views or request.msg_id in self._pending_views:
                raise Refused(MALFORMED, f"view {view_id!r} or msg_id already in use")
            if len(self.views) >= self.policy.max_views:
                raise Refused(
                    TOO_MANY_VIEWS,
                    f"this session already has {len(self.views)} live views, the most "
                    "allowed; delete some first",
                )
            view = SessionView(view_id, server_view_name(), request.entity_id, cells)
            self.views[view_id] = view
            self._by_server_id[view.server_id] = view_id
            self._pending_views[request.msg_id] = view_id
            if self.views_gauge is not None:
                self.views_gauge.inc()
        body = make_view_body(body, view.server_id)
        return (
            (varint_field(REQUEST_MSG_ID, request.msg_id) if request.msg_id else b"")
            + string_field(REQUEST_ENTITY_ID, request.entity_id)
            + bytes_field(request.number or 0, body)
        )

    def _forget_view(self, view_id: str, keep_name_until: int | None = None) -> None:
        """Drop a view (lock held); its server name is kept until ``keep_name_until`` answers."""
        view = self.views.pop(view_id, None)
        if view is None:
            return
        if keep_name_until is not None:
            self._pending_deletes[keep_name_until] = view.server_id
        else:
            self._by_server_id.pop(view.server_id, None)
        if self.views_gauge is not None:
            self.views_gauge.dec()

    def _refuse(self, request: Request, refusal: Refused) -> Verdict:
        self.rejected += 1
        response = None
        if request.msg_id is not None:
            response = error_response(request.msg_id, request.entity_id, refusal.message)
        return Verdict(
            False,
            refusal.reason,
            response,
            close=self.rejected > self.policy.max_rejected,
        )

    # -- responses --------------------------------------------------------------

    def responses(self, send: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """The engine's response callback for this session: ``outgoing``, then ``send``."""

        def deliver(frame: bytes) -> None:
            out = self.outgoing(frame)
            if out is not None:
                send(out)

        return deliver

    def outgoing(self, frame: bytes) -> bytes | None:
        """A response on its way to the client: client's view names, failed views, hidden tables.

        None for the answer to the guard's own probe, which the client never sees.
        """
        try:
            msg_id, entity_id, kind = _response_head(frame)
        except WireError:
            return frame
        if msg_id == PROBE_MSG_ID and self._probing:
            dimensions = None
            if kind == RESPONSE_VIEW_DIMENSIONS:
                rows = _dimension(frame, DIMENSIONS_VIEW_ROWS)
                columns = _dimension(frame, DIMENSIONS_VIEW_COLUMNS)
                if rows is not None and columns is not None:
                    dimensions = (rows, columns)
            with self._lock:
                self._probe_dimensions = dimensions
            return None
        client_entity = new_view = None
        with self._lock:
            if msg_id is not None and msg_id in self._pending_views:
                new_view = self._pending_views.pop(msg_id)
                if kind == RESPONSE_SERVER_ERROR:
                    self._forget_view(new_view)
                    new_view = None
            if entity_id:
                client_entity = self._by_server_id.get(entity_id)
            if msg_id is not None and msg_id in self._pending_deletes:
                self._by_server_id.pop(self._pending_deletes.pop(msg_id), None)
        if client_entity is not None or new_view is not None:
            frame = response_for_client(frame, client_entity, new_view)
        if self.restricted and kind == RESPONSE_HOSTED_TABLES:
            return self._filter_hosted_tables(frame)
        return frame

    def _filter_hosted_tables(self, frame: bytes) -> bytes:
        out = bytearray()
        for field in fields(frame):
            if field.number != RESPONSE_HOSTED_TABLES:
                out += frame[field.start : field.end]
                continue
            listing = frame[field.value : field.end]
            kept = bytearray()
            for entry in fields(listing):
                if entry.number == 1 and entry.wire_type == LENGTH_DELIMITED:
                    name = _hosted_table_name(listing[entry.value : entry.end])
                    if name is None or not self.can_read(name):
                        continue
                kept += listing[entry.start : entry.end]
            out += bytes_field(RESPONSE_HOSTED_TABLES, bytes(kept))
        return bytes(out)

    def close(self) -> None:
        """The session ended: its views are gone with it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.views_gauge is not None and self.views:
                self.views_gauge.dec(len(self.views))
            self.views.clear()
            self._by_server_id.clear()
            self._pending_views.clear()
            self._pending_deletes.clear()


def _column_range_check(start: int | None, end: int | None) -> DimensionsCheck:
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


def _map_entry(entry: bytes) -> tuple[str, str]:
    """(key, value) of a map<string, string> entry the schema validator accepted."""
    key = value = ""
    for part in fields(entry):
        text = entry[part.value : part.end].decode("utf-8")
        if part.number == 1:
            key = text
        elif part.number == 2:
            value = text
    return key, value


def _fields_of(payload: bytes, field: Field) -> list[Field]:
    """The fields of a message-typed field inside ``payload``."""
    if field.wire_type != LENGTH_DELIMITED:
        raise Refused(MALFORMED, f"field {field.number} is not a message")
    try:
        return list(fields(payload[field.value : field.end]))
    except WireError as exc:
        raise Refused(MALFORMED, f"malformed request body: {exc}") from None


def _small_arguments(body: list[Field]) -> None:
    for field in body:
        if field.wire_type == VARINT and field.value > MAX_ARGUMENT:
            raise Refused(
                BAD_ARGUMENT, f"argument {field.number} is {field.value}, more than {MAX_ARGUMENT}"
            )


def _dimension(frame: bytes, number: int) -> int | None:
    """One field of the ViewDimensionsResp inside a Response (0 if left out)."""
    try:
        for field in fields(frame):
            if field.number == RESPONSE_VIEW_DIMENSIONS and field.wire_type == LENGTH_DELIMITED:
                body = frame[field.value : field.end]
                for inner in fields(body):
                    if inner.number == number and inner.wire_type == VARINT:
                        return inner.value
                return 0
    except WireError:
        return None
    return None


def _read_msg_id(frame: bytes, request: Request) -> None:
    """Best effort: the msg_id of an oversized frame, from its first field only.

    Encoders write fields in number order, so a msg_id is the first field or, if
    the first field is a later one, zero (left out).
    """
    try:
        first = next(fields(memoryview(frame)), None)
    except WireError:
        return
    if first is None:
        return
    if first.number == REQUEST_MSG_ID and first.wire_type == VARINT and first.value < 1 << 32:
        request.msg_id = first.value
    elif first.number > REQUEST_MSG_ID:
        request.msg_id = 0


def _response_head(frame: bytes) -> tuple[int | None, str, int | None]:
    """(msg_id, entity_id, field number of the response kind) of a Response."""
    msg_id = kind = None
    entity_id = ""
    for field in fields(frame):
        if field.number == RESPONSE_MSG_ID and field.wire_type == VARINT:
            msg_id = field.value
        elif field.number == RESPONSE_ENTITY_ID and field.wire_type == LENGTH_DELIMITED:
            entity_id = utf8(frame, field)
        elif field.number not in (RESPONSE_MSG_ID, RESPONSE_ENTITY_ID):
            kind = field.number
    return msg_id, entity_id, kind


def _hosted_table_name(entry: bytes) -> str | None:
    try:
        for field in fields(entry):
            if field.number == HOSTED_TABLE_ENTITY_ID and field.wire_type == LENGTH_DELIMITED:
                return utf8(entry, field)
    except WireError:
        return None
    return None
