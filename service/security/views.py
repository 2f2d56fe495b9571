"""A session's views, named by the server: what the client calls a view is not what the engine does.

The engine keeps one global map of view ids, and a client chooses the id of
each view it makes. Two sessions choosing the same id both got a view; when
the first session closed, the engine dropped that id, and closing the second
aborted the whole process (``PerspectiveViewNotFoundException`` thrown where
nothing catches it, perspective 4.3.0). A client that learned another
session's id could also read, subscribe to or delete that view.

So the server names every view itself (``#view-<n>``: never a table name; from one process-wide
counter, so names never repeat) and keeps, per session, the map between the
client's name and its own:

* on the way in, ``table_make_view`` carries the server's name instead of the
  client's, and every view-scoped request is addressed by translating its
  ``entity_id`` through this session's map (a name the map does not hold is
  refused: no session can reach a view it did not make);
* on the way out, responses carry the client's names again: the stock client
  (perspective 4.3.0, Rust, also inside the browser's wasm) checks that a
  ``TableMakeViewResp`` names the id it chose, and matches everything else by
  ``msg_id``; the envelope's ``entity_id`` is translated back too, so a client
  never sees a server name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from service.security.wire import WireError, bytes_field, fields, string_field, varint_field

REQUEST_MSG_ID = 1
REQUEST_ENTITY_ID = 2
RESPONSE_MSG_ID = 1
RESPONSE_ENTITY_ID = 2
MAKE_VIEW_ID = 1  # TableMakeViewReq { string view_id = 1; ViewConfig config = 2 }
MAKE_VIEW_RESPONSE = 6  # Response.table_make_view_resp: TableMakeViewResp { string view_id = 1 }

_names = itertools.count(1)


def server_view_name() -> str:
    """A view id no session has used in this process (``next`` on a count is atomic in CPython)."""
    return f"#view-{next(_names)}"


@dataclass(slots=True)
class SessionView:
    """One live view of a session."""

    client_id: str
    server_id: str
    table: str
    cells: int = 0  # its price (service/security/cost.py)
    callbacks: int = 0


def request_for_engine(
    frame: bytes, msg_id: int, entity_id: str, body_start: int, body_end: int
) -> bytes:
    """A parsed request rebuilt with another ``entity_id`` (its body copied verbatim).

    The guard only lets through frames made of a msg_id, an entity_id and one
    request, so nothing else is lost.
    """
    head = varint_field(REQUEST_MSG_ID, msg_id) if msg_id else b""
    return head + string_field(REQUEST_ENTITY_ID, entity_id) + frame[body_start:body_end]


def make_view_body(body: bytes, server_id: str) -> bytes:
    """A TableMakeViewReq payload with ``view_id`` replaced by the server's name."""
    out = string_field(MAKE_VIEW_ID, server_id)
    for f in fields(body):
        if f.number != MAKE_VIEW_ID:
            out += body[f.start : f.end]
    return out


def response_for_client(
    frame: bytes, entity_id: str | None = None, view_id: str | None = None
) -> bytes:
    """A response whose ``entity_id`` and/or new view's ``view_id`` are the client's names.

    Only the envelope is rebuilt; the payload (an Arrow batch, say) is copied once, verbatim.
    """
    out = bytearray()
    try:
        for f in fields(frame):
            if f.number == RESPONSE_ENTITY_ID and entity_id is not None:
                out += string_field(RESPONSE_ENTITY_ID, entity_id)
            elif f.number == MAKE_VIEW_RESPONSE and view_id is not None:
                out += bytes_field(MAKE_VIEW_RESPONSE, string_field(MAKE_VIEW_ID, view_id))
            else:
                out += frame[f.start : f.end]
    except WireError:
        return frame
    return bytes(out)
