"""Reading and writing Perspective messages: requests as the guard reads them, responses it edits.

No policy here: the facts are service/security/protocol.py's, the decisions
service/security/guard.py's. Requests are read strictly, because the engine
reads them too: the guard and the engine must never read one frame two ways.

* Protobuf lets a field repeat (the last one wins) and a oneof hold several
  members (the last one wins); a client never needs either, so
  :func:`parse_request` refuses both.
* The engine parses a request with the C++ protobuf runtime and, when parsing
  fails halfway (a wrong wire type, a string that is not UTF-8), goes on with
  the part it did parse: a filter cut off before its value, for instance,
  crashes the process. :func:`validate` checks a body against its schema all
  the way down: every field known, of its declared wire type, every string
  valid UTF-8, every nested message well formed. A body that passes parses
  completely.

Responses are rebuilt at the envelope only: a payload (an Arrow batch, say) is
copied once, verbatim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.security.protocol import (
    CONFIG_FILTER,
    DIMENSIONS_VIEW_COLUMNS,
    DIMENSIONS_VIEW_ROWS,
    FILTER_COLUMN,
    FILTER_OPERATOR,
    FILTER_VALUE,
    HOSTED_TABLE_ENTITY_ID,
    KIND_NUMBERS,
    KINDS,
    MAKE_VIEW_VIEW_ID,
    MAP_KEY,
    MAP_VALUE,
    NO_VALUE_OPERATORS,
    REQUEST_ENTITY_ID,
    REQUEST_MSG_ID,
    RESPONSE_ENTITY_ID,
    RESPONSE_HOSTED_TABLES,
    RESPONSE_MAKE_VIEW,
    RESPONSE_MSG_ID,
    RESPONSE_SERVER_ERROR,
    RESPONSE_VIEW_DIMENSIONS,
    SERVER_ERROR_MESSAGE,
    Kind,
    Message,
)
from service.security.refusals import MALFORMED, UNKNOWN_REQUEST, Refused
from service.security.wire import (
    FIXED64,
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

UINT32_LIMIT = 1 << 32

# -- requests ---------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    """A request's envelope: msg_id, entity_id and the one request it carries."""

    msg_id: int | None = None
    entity_id: str = ""
    number: int | None = None  # field number of the oneof member
    body: Field | None = None

    @property
    def kind(self) -> Kind:
        assert self.number is not None, "a parsed request"
        return KINDS[self.number]

    def payload(self, frame: bytes) -> bytes:
        """The request's body message."""
        assert self.body is not None, "a parsed request"
        return frame[self.body.value : self.body.end]


def parse_request(frame: bytes, request: Request) -> None:
    """Fill ``request`` from a frame; raise :class:`Refused` unless it is unambiguous.

    ``request`` is filled as the frame is read, so a refusal can still answer the
    ``msg_id`` when it was read before the problem.
    """
    seen: set[int] = set()
    try:
        for field in fields(frame):
            if field.number in seen:
                raise Refused(MALFORMED, f"field {field.number} given twice")
            seen.add(field.number)
            if field.number == REQUEST_MSG_ID:
                if field.wire_type != VARINT or field.value >= UINT32_LIMIT:
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


def first_msg_id(frame: bytes) -> int | None:
    """Best effort: the msg_id of a frame too large to read whole, from its first field only.

    Encoders write fields in number order, so a msg_id is the first field or, if
    the first field is a later one, zero (left out).
    """
    try:
        first = next(fields(memoryview(frame)), None)
    except WireError:
        return None
    if first is None:
        return None
    if first.number == REQUEST_MSG_ID and first.wire_type == VARINT and first.value < UINT32_LIMIT:
        return first.value
    return 0 if first.number > REQUEST_MSG_ID else None


def new_view_id(frame: bytes, request: Request) -> str:
    """The view id a ``table_make_view`` request chose: one non-empty string.

    Its body passed :func:`validate` (so the id is UTF-8)."""
    payload = request.payload(frame)
    ids = [f for f in message_fields(payload) if f.number == MAKE_VIEW_VIEW_ID]
    if len(ids) > 1:
        raise Refused(MALFORMED, "view_id must be one string")
    view_id = text(payload, ids[0]) if ids else ""
    if not view_id:
        raise Refused(MALFORMED, "a new view needs a view_id")
    return view_id


def message_fields(payload: bytes, field: Field | None = None) -> list[Field]:
    """The fields of ``payload``, or of the message-typed ``field`` inside it."""
    if field is not None:
        if field.wire_type != LENGTH_DELIMITED:
            raise Refused(MALFORMED, f"field {field.number} is not a message")
        payload = payload[field.value : field.end]
    try:
        return list(fields(payload))
    except WireError as exc:
        raise Refused(MALFORMED, f"malformed request body: {exc}") from None


def text(payload: bytes, field: Field) -> str:
    """A string field of a body :func:`validate` accepted."""
    return payload[field.value : field.end].decode("utf-8")


def map_entry(entry: bytes) -> tuple[str, str]:
    """(key, value) of a ``map<string, string>`` entry :func:`validate` accepted."""
    key = value = ""
    for part in fields(entry):
        if part.number == MAP_KEY:
            key = text(entry, part)
        elif part.number == MAP_VALUE:
            value = text(entry, part)
    return key, value


class SchemaError(ValueError):
    """A body that does not match its schema."""


def validate(payload: bytes, message: Message, path: str = "") -> None:
    """Raise :class:`SchemaError` unless ``payload`` is exactly a ``message``."""
    try:
        found = list(fields(payload))
    except WireError as exc:
        raise SchemaError(f"{path or 'body'}: {exc}") from None
    for field in found:
        kind = message.get(field.number)
        where = f"{path}.{field.number}" if path else str(field.number)
        if kind is None:
            raise SchemaError(f"{where}: unknown field")
        if isinstance(kind, dict):
            _expect(field.wire_type, LENGTH_DELIMITED, where)
            validate(payload[field.value : field.end], kind, where)
        elif kind in ("string", "bytes"):
            _expect(field.wire_type, LENGTH_DELIMITED, where)
            if kind == "string":
                try:
                    text(payload, field)
                except UnicodeDecodeError:
                    raise SchemaError(f"{where}: not UTF-8") from None
        elif kind == "double":
            _expect(field.wire_type, FIXED64, where)
        else:
            _expect(field.wire_type, VARINT, where)
            if kind == "bool" and field.value > 1:
                raise SchemaError(f"{where}: not a bool")
            if kind in ("uint32", "enum") and field.value >= UINT32_LIMIT:
                raise SchemaError(f"{where}: larger than 32 bits")


def _expect(wire_type: int, expected: int, where: str) -> None:
    if wire_type != expected:
        raise SchemaError(f"{where}: wire type {wire_type}, expected {expected}")


def filters_without_values(config: bytes) -> list[tuple[str, str]]:
    """(column, operator) of each filter in a valid ViewConfig that lacks a needed value."""
    missing = []
    for field in fields(config):
        if field.number != CONFIG_FILTER:
            continue
        entry = config[field.value : field.end]
        column = operator = ""
        values = 0
        for part in fields(entry):
            if part.number == FILTER_COLUMN:
                column = text(entry, part)
            elif part.number == FILTER_OPERATOR:
                operator = text(entry, part)
            elif part.number == FILTER_VALUE:
                values += 1
        if values == 0 and operator not in NO_VALUE_OPERATORS:
            missing.append((column, operator))
    return missing


def readdressed(frame: bytes, request: Request, entity_id: str) -> bytes:
    """``request`` as parsed from ``frame``, with another ``entity_id`` (its body verbatim).

    The guard only lets through frames made of a msg_id, an entity_id and one
    request, so nothing else is lost.
    """
    assert request.body is not None
    head = varint_field(REQUEST_MSG_ID, request.msg_id) if request.msg_id else b""
    body = frame[request.body.start : request.body.end]
    return head + string_field(REQUEST_ENTITY_ID, entity_id) + body


def make_view_request(frame: bytes, request: Request, view_id: str) -> bytes:
    """A ``table_make_view`` request with its ``view_id`` replaced by ``view_id``."""
    payload = request.payload(frame)
    body = string_field(MAKE_VIEW_VIEW_ID, view_id)
    for field in fields(payload):
        if field.number != MAKE_VIEW_VIEW_ID:
            body += payload[field.start : field.end]
    head = varint_field(REQUEST_MSG_ID, request.msg_id) if request.msg_id else b""
    return (
        head
        + string_field(REQUEST_ENTITY_ID, request.entity_id)
        + bytes_field(KIND_NUMBERS["table_make_view"], body)
    )


def dimensions_request(msg_id: int, view_id: str) -> bytes:
    """A ``view_dimensions`` request: how the guard asks the engine for a view's size."""
    return (
        varint_field(REQUEST_MSG_ID, msg_id)
        + string_field(REQUEST_ENTITY_ID, view_id)
        + bytes_field(KIND_NUMBERS["view_dimensions"], b"")
    )


# -- responses --------------------------------------------------------------------


def error_response(msg_id: int, entity_id: str, message: str) -> bytes:
    """A ``Response`` carrying a ``ServerError`` (status SERVER_ERROR) for ``msg_id``."""
    error = string_field(SERVER_ERROR_MESSAGE, message)
    out = varint_field(RESPONSE_MSG_ID, msg_id) if msg_id else b""
    if entity_id:
        out += string_field(RESPONSE_ENTITY_ID, entity_id)
    return out + bytes_field(RESPONSE_SERVER_ERROR, error)


def error_text(response: bytes) -> str | None:
    """The message of a ``ServerError`` response, if it is one."""
    body = _member(response, RESPONSE_SERVER_ERROR)
    return None if body is None else _string(body, SERVER_ERROR_MESSAGE)


def response_head(frame: bytes) -> tuple[int | None, str, int | None]:
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


def view_dimensions(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) of a ``ViewDimensionsResp`` (a field left out is 0), or None."""
    body = _member(frame, RESPONSE_VIEW_DIMENSIONS)
    if body is None:
        return None
    found = {DIMENSIONS_VIEW_ROWS: 0, DIMENSIONS_VIEW_COLUMNS: 0}
    try:
        for inner in fields(body):
            if inner.number in found and inner.wire_type == VARINT:
                found[inner.number] = inner.value
    except WireError:
        return None
    return found[DIMENSIONS_VIEW_ROWS], found[DIMENSIONS_VIEW_COLUMNS]


def response_for_client(
    frame: bytes, entity_id: str | None = None, view_id: str | None = None
) -> bytes:
    """A response whose ``entity_id`` and/or new view's ``view_id`` are the client's names."""
    out = bytearray()
    try:
        for f in fields(frame):
            if f.number == RESPONSE_ENTITY_ID and entity_id is not None:
                out += string_field(RESPONSE_ENTITY_ID, entity_id)
            elif f.number == RESPONSE_MAKE_VIEW and view_id is not None:
                out += bytes_field(RESPONSE_MAKE_VIEW, string_field(MAKE_VIEW_VIEW_ID, view_id))
            else:
                out += frame[f.start : f.end]
    except WireError:
        return frame
    return bytes(out)


def hosted_tables_only(frame: bytes, visible: Callable[[str], bool]) -> bytes:
    """A hosted-tables listing without the tables ``visible`` says no to."""
    out = bytearray()
    for field in fields(frame):
        if field.number != RESPONSE_HOSTED_TABLES:
            out += frame[field.start : field.end]
            continue
        listing = frame[field.value : field.end]
        kept = bytearray()
        for entry in fields(listing):
            if entry.number == 1 and entry.wire_type == LENGTH_DELIMITED:
                name = _string(listing[entry.value : entry.end], HOSTED_TABLE_ENTITY_ID)
                if name is None or not visible(name):
                    continue
            kept += listing[entry.start : entry.end]
        out += bytes_field(RESPONSE_HOSTED_TABLES, bytes(kept))
    return bytes(out)


def _member(frame: bytes, number: int) -> bytes | None:
    """The body of the response member ``number``, if the frame carries it."""
    try:
        for field in fields(frame):
            if field.number == number and field.wire_type == LENGTH_DELIMITED:
                return frame[field.value : field.end]
    except WireError:
        return None
    return None


def _string(message: bytes, number: int) -> str | None:
    """The string field ``number`` of ``message``, if it has one (and is well formed)."""
    try:
        for field in fields(message):
            if field.number == number and field.wire_type == LENGTH_DELIMITED:
                return utf8(message, field)
    except WireError:
        return None
    return None
