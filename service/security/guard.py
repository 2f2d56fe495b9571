"""The session guard: every Perspective request a websocket client sends is checked here.

Perspective's own server lets any client update, clear, replace, remove or delete
any hosted table, and host new ones. livetables' tables are fed from Kafka; a
client must not change them unless the config marks the table ``editable``. The
guard reads each request frame's envelope (service/security/messages.py, by the
facts of service/security/protocol.py) and decides:

* reads, views, expressions and view deletion pass;
* writes (update, replace and clear, remove) pass only for an ``editable``
  table; deleting a hosted table and hosting a new one (make_table) are refused
  for every table: the tables are the configuration's, fed from Kafka, and a
  deleted one could not be fed again;
* a request about a table the client may not read, or about a view this session
  did not create, is refused; view ids are the server's (service/security/views.py),
  so sessions can neither collide on nor reach each other's views;
* per-session limits: live views, callbacks, request size, and what the
  arguments ask of the engine (service/security/arguments.py: what it
  mishandles, and what views and serialisations may cost it);
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
from service.security import messages
from service.security.arguments import ArgumentCheck, DimensionsCheck
from service.security.cost import CostLimits, TableFacts
from service.security.messages import Request
from service.security.protocol import (
    CLIENT,
    ENGINE_WRITES,
    GET_HOSTED_SUBSCRIBE,
    NEW_TABLE,
    RESPONSE_HOSTED_TABLES,
    RESPONSE_SERVER_ERROR,
    RESPONSE_VIEW_DIMENSIONS,
    TABLE,
    VIEW,
)
from service.security.refusals import (
    BAD_ARGUMENT,
    FORBIDDEN_TABLE,
    MAKE_TABLE,
    MALFORMED,
    READ_ONLY,
    TABLE_DELETE,
    TOO_LARGE,
    TOO_MANY_CALLBACKS,
    UNKNOWN_TABLE,
    Refused,
)
from service.security.views import SessionView, SessionViews
from service.security.wire import VARINT, WireError

# Callbacks a client may register for the whole session (table on_delete, hosted-table
# subscriptions). Each one is engine state and a message per event.
MAX_SESSION_CALLBACKS = 1024
# The msg_id of the guard's own requests (probes); refused from clients.
PROBE_MSG_ID = (1 << 32) - 1


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
        return None if self.response is None else messages.error_text(self.response)


@dataclass(frozen=True, slots=True)
class _Passed:
    """A request the guard passes: what to forward, and what to ask the engine first."""

    forward: bytes | None = None  # None: the frame as it came
    view: SessionView | None = None  # the session's view it is about
    on_dimensions: DimensionsCheck | None = None


class SessionGuard:
    """The guard of one websocket session.

    ``handle`` and ``check`` run for one frame at a time, in order (on the
    session's engine worker); ``outgoing`` runs on whichever thread the engine
    answers from. The views (service/security/views.py) and the probe's answer
    are what both touch, each behind a lock.
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
        self.facts = facts  # None: views and serialisations are not priced (unit tests only)
        self.book = SessionViews(policy.max_views, views_gauge)
        self.arguments = ArgumentCheck(
            policy.costs,
            facts,
            priced=lambda table: table in policy.tables and self.can_read(table),
            held_cells=self.book.held_cells,
        )
        self.rejected = 0
        self._session_callbacks = 0
        # The engine's answer to the guard's own dimensions request (see handle()).
        self._probe_lock = threading.Lock()
        self._probe_dimensions: tuple[int, int] | None = None
        self._probing = False

    @property
    def views(self) -> dict[str, SessionView]:
        """The session's live views, by the client's names."""
        return self.book.live

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
        with self._turn(frame):
            request = Request()
            outcome = self._check(frame, request)
            if isinstance(outcome, Verdict):
                return outcome
            if outcome.on_dimensions is not None and outcome.view is not None:
                dimensions = self._dimensions(outcome.view.server_id, forward)
                refusal = (
                    Refused(BAD_ARGUMENT, f"view {request.entity_id!r} has no dimensions")
                    if dimensions is None
                    else outcome.on_dimensions(*dimensions)
                )
                if refusal is not None:
                    self.book.undo(outcome.view, request.kind.name)
                    return self._refuse(request, refusal)
            forward(outcome.forward if outcome.forward is not None else frame)
        return Verdict(True, forward=outcome.forward)

    def check(self, frame: bytes) -> Verdict:
        """The verdict on a frame, without forwarding it or probing its view's size."""
        outcome = self._check(frame, Request())
        return outcome if isinstance(outcome, Verdict) else Verdict(True, forward=outcome.forward)

    def refuse(self, frame: bytes, reason: str, message: str) -> Verdict:
        """Refuse a frame before reading it whole (rate and queue limits of the websocket)."""
        return self._refuse(Request(msg_id=messages.first_msg_id(frame)), Refused(reason, message))

    def closing_turns(self) -> contextlib.ExitStack:
        """Write turns on every table this session has views on: closing it drops them.

        Taken in name order, so two sessions closing never wait for each other in a circle.
        """
        turns = contextlib.ExitStack()
        if self.facts is not None:
            for table in self.book.tables():
                turns.enter_context(self.facts.writing(table))
        return turns

    def close(self) -> None:
        """The session ended: its views are gone with it."""
        self.book.close()

    # -- requests ---------------------------------------------------------------

    def _turn(self, frame: bytes) -> AbstractContextManager[None]:
        """The table gate a request takes (a first look at it; ``_check`` decides)."""
        request = Request()
        try:
            messages.parse_request(frame, request)
        except Refused:
            return contextlib.nullcontext()
        kind = request.kind
        table = None
        if kind.scope == TABLE and request.entity_id in self.policy.tables:
            table = request.entity_id
        elif kind.scope == VIEW:
            table = self.book.table_of(request.entity_id)
        if self.facts is None or table is None:
            return contextlib.nullcontext()
        if kind.writes or kind.name in ENGINE_WRITES:
            return self.facts.writing(table)
        return self.facts.reading(table)

    def _check(self, frame: bytes, request: Request) -> Verdict | _Passed:
        try:
            if len(frame) > self.policy.max_request_bytes:
                request.msg_id = messages.first_msg_id(frame)
                raise Refused(
                    TOO_LARGE,
                    f"request of {len(frame)} bytes is larger than the "
                    f"{self.policy.max_request_bytes} bytes allowed",
                )
            messages.parse_request(frame, request)
            if request.msg_id is None:
                request.msg_id = 0  # proto3 leaves a zero out of the frame
            if request.msg_id == PROBE_MSG_ID:
                raise Refused(MALFORMED, "msg_id 4294967295 is reserved")
            # Arguments and price first: authorising a new view counts it.
            checked = self.arguments.check(frame, request)
            return self._authorise(frame, request, checked.cells, checked.on_dimensions)
        except Refused as refusal:
            return self._refuse(request, refusal)

    def _authorise(
        self, frame: bytes, request: Request, cells: int, on_dimensions: DimensionsCheck | None
    ) -> _Passed:
        """Check access; what to forward (view ids the server's) and ask the engine first."""
        kind = request.kind
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
                assert request.msg_id is not None
                view = self.book.create(
                    messages.new_view_id(frame, request), name, cells, request.msg_id
                )
                return _Passed(messages.make_view_request(frame, request, view.server_id))
            if kind.name == "table_on_delete":
                self._session_callback()
        elif kind.scope == NEW_TABLE:
            raise Refused(
                MAKE_TABLE,
                f"cannot host a new table {name!r}: clients read the tables the server hosts",
            )
        elif kind.scope == VIEW:
            view = self.book.reach(name, kind.name, request.msg_id or 0)
            forward = messages.readdressed(frame, request, view.server_id)
            return _Passed(forward, view, on_dimensions)
        elif kind.scope == CLIENT and kind.name == "get_hosted_tables":
            payload = request.payload(frame)
            if any(
                f.number == GET_HOSTED_SUBSCRIBE and f.wire_type == VARINT and f.value
                for f in messages.message_fields(payload)
            ):
                self._session_callback()
        return _Passed()

    def _check_table(self, name: str) -> None:
        if name not in self.policy.tables:
            raise Refused(UNKNOWN_TABLE, f"no table named {name!r}")
        if not self.can_read(name):
            raise Refused(FORBIDDEN_TABLE, f"table {name!r} is not available to this client")

    def _session_callback(self) -> None:
        if self._session_callbacks >= MAX_SESSION_CALLBACKS:
            raise Refused(TOO_MANY_CALLBACKS, "too many callbacks registered in this session")
        self._session_callbacks += 1

    def _dimensions(
        self, server_id: str, forward: Callable[[bytes], None]
    ) -> tuple[int, int] | None:
        """(rows, columns) of a view, asked of the engine by a request the client never sees."""
        with self._probe_lock:
            self._probe_dimensions = None
            self._probing = True
        try:
            forward(messages.dimensions_request(PROBE_MSG_ID, server_id))
        finally:
            with self._probe_lock:
                dimensions, self._probe_dimensions = self._probe_dimensions, None
                self._probing = False
        return dimensions

    def _refuse(self, request: Request, refusal: Refused) -> Verdict:
        self.rejected += 1
        response = None
        if request.msg_id is not None:
            response = messages.error_response(request.msg_id, request.entity_id, refusal.message)
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
            msg_id, entity_id, kind = messages.response_head(frame)
        except WireError:
            return frame
        if msg_id == PROBE_MSG_ID and self._probing:
            dimensions = (
                messages.view_dimensions(frame) if kind == RESPONSE_VIEW_DIMENSIONS else None
            )
            with self._probe_lock:
                self._probe_dimensions = dimensions
            return None
        client_entity, new_view = self.book.answered(
            msg_id, entity_id, failed=kind == RESPONSE_SERVER_ERROR
        )
        if client_entity is not None or new_view is not None:
            frame = messages.response_for_client(frame, client_entity, new_view)
        if self.restricted and kind == RESPONSE_HOSTED_TABLES:
            return messages.hosted_tables_only(frame, self.can_read)
        return frame
