"""Why a websocket request is refused: the reasons, and the exception that carries one.

Each reason is a label value of ``livetables_websocket_rejected_requests_total``
(:data:`REASONS` lists them all, so the metric starts at zero for each). A
:class:`Refused` carries the reason and a message for the client that names
the table, view or setting involved.
"""

from __future__ import annotations

# What the client may not do.
READ_ONLY = "read_only"
TABLE_DELETE = "table_delete"
MAKE_TABLE = "make_table"
UNKNOWN_TABLE = "unknown_table"
FORBIDDEN_TABLE = "forbidden_table"
UNKNOWN_VIEW = "unknown_view"
# What the engine cannot read or would mishandle.
MALFORMED = "malformed"
UNKNOWN_REQUEST = "unknown_request"
BAD_ARGUMENT = "bad_argument"
ENGINE_ERROR = "engine_error"
# How much one session may have or ask for.
TOO_MANY_VIEWS = "too_many_views"
TOO_MANY_CALLBACKS = "too_many_callbacks"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
TOO_MANY_PENDING = "too_many_pending"
# What one view or serialisation may cost the engine (service/security/cost.py).
TOO_MANY_EXPRESSIONS = "too_many_expressions"
EXPRESSION_TOO_LONG = "expression_too_long"
TOO_MANY_PIVOT_COLUMNS = "too_many_pivot_columns"
VIEW_TOO_LARGE = "view_too_large"
SESSION_TOO_LARGE = "session_too_large"
SERIALIZATION_TOO_LARGE = "serialization_too_large"

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
    TOO_MANY_EXPRESSIONS,
    EXPRESSION_TOO_LONG,
    TOO_MANY_PIVOT_COLUMNS,
    VIEW_TOO_LARGE,
    SESSION_TOO_LARGE,
    SERIALIZATION_TOO_LARGE,
)


class Refused(Exception):
    """A request the guard does not pass: ``reason`` for the metric, ``message`` for the client."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
