"""A session's views, named by the server: what the client calls a view is not what the engine does.

The engine keeps one global map of view ids, and a client chooses the id of
each view it makes. Two sessions choosing the same id both got a view; when
the first session closed, the engine dropped that id, and closing the second
aborted the whole process (``PerspectiveViewNotFoundException`` thrown where
nothing catches it, perspective 4.3.0). A client that learned another
session's id could also read, subscribe to or delete that view.

So the server names every view itself (``#view-<n>``: never a table name; from
one process-wide counter, so names never repeat) and :class:`SessionViews`
keeps, per session, the map between the client's names and its own:

* on the way in, ``table_make_view`` carries the server's name instead of the
  client's, and every view-scoped request is addressed by translating its
  ``entity_id`` through this session's map (a name the map does not hold is
  refused: no session can reach a view it did not make);
* on the way out, responses carry the client's names again: the stock client
  (perspective 4.3.0, Rust, also inside the browser's wasm) checks that a
  ``TableMakeViewResp`` names the id it chose, and matches everything else by
  ``msg_id``; the envelope's ``entity_id`` is translated back too, so a client
  never sees a server name.

It also keeps what a session's views hold: their price in cells
(service/security/cost.py), and their callbacks.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

from service.security.refusals import (
    MALFORMED,
    TOO_MANY_CALLBACKS,
    TOO_MANY_VIEWS,
    UNKNOWN_VIEW,
    Refused,
)

# Callbacks a client may register on one view (on_update, on_delete). Each one is
# engine state and a message per event; a client needs a handful.
MAX_CALLBACKS_PER_VIEW = 64
CALLBACK_KINDS = frozenset({"view_on_update", "view_on_delete"})

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


class SessionViews:
    """The live views of one session, by the client's names and the server's.

    Requests are checked on the session's engine worker, one at a time; responses
    come from whichever thread the engine answers on. A lock covers both.
    """

    def __init__(self, max_views: int, gauge: Any = None) -> None:
        self.max_views = max_views
        self.gauge = gauge  # livetables_websocket_views, or None
        self.live: dict[str, SessionView] = {}  # by the client's name
        self._by_server_id: dict[str, str] = {}  # server view id -> client's name
        self._pending_views: dict[int, str] = {}  # msg_id of make_view -> client's name
        self._pending_deletes: dict[int, str] = {}  # msg_id of view_delete -> server view id
        self._lock = threading.Lock()
        self._closed = False

    def table_of(self, client_id: str) -> str | None:
        with self._lock:
            view = self.live.get(client_id)
        return None if view is None else view.table

    def tables(self) -> list[str]:
        """The tables this session has views on, in name order."""
        with self._lock:
            return sorted({view.table for view in self.live.values()})

    def held_cells(self) -> int:
        with self._lock:
            return sum(view.cells for view in self.live.values())

    def create(self, client_id: str, table: str, cells: int, msg_id: int) -> SessionView:
        """A new view, named by the server (forgotten if the engine's answer to ``msg_id``
        is an error)."""
        with self._lock:
            if client_id in self.live or msg_id in self._pending_views:
                raise Refused(MALFORMED, f"view {client_id!r} or msg_id already in use")
            if len(self.live) >= self.max_views:
                raise Refused(
                    TOO_MANY_VIEWS,
                    f"this session already has {len(self.live)} live views, the most "
                    "allowed; delete some first",
                )
            view = SessionView(client_id, server_view_name(), table, cells)
            self.live[client_id] = view
            self._by_server_id[view.server_id] = client_id
            self._pending_views[msg_id] = client_id
            if self.gauge is not None:
                self.gauge.inc()
        return view

    def reach(self, client_id: str, kind: str, msg_id: int) -> SessionView:
        """The view a view-scoped request is about; counts a callback, forgets a deleted view."""
        with self._lock:
            view = self.live.get(client_id)
            if view is None:
                raise Refused(UNKNOWN_VIEW, f"no view {client_id!r} in this session")
            if kind in CALLBACK_KINDS:
                if view.callbacks >= MAX_CALLBACKS_PER_VIEW:
                    raise Refused(
                        TOO_MANY_CALLBACKS,
                        f"view {client_id!r} already has {view.callbacks} callbacks",
                    )
                view.callbacks += 1
            elif kind == "view_delete":
                self._forget(client_id, keep_name_until=msg_id)
        return view

    def undo(self, view: SessionView, kind: str) -> None:
        """A request refused after :meth:`reach` (on the engine's answer) changes nothing."""
        if kind in CALLBACK_KINDS:
            with self._lock:
                view.callbacks -= 1

    def answered(
        self, msg_id: int | None, entity_id: str, failed: bool
    ) -> tuple[str | None, str | None]:
        """Note the engine's answer; (the client's name for ``entity_id``, the new view it made).

        A view the engine refused to make is forgotten; a deleted view's server name
        is dropped once its deletion is answered.
        """
        client_entity = new_view = None
        with self._lock:
            if msg_id is not None and msg_id in self._pending_views:
                new_view = self._pending_views.pop(msg_id)
                if failed:
                    self._forget(new_view)
                    new_view = None
            if entity_id:
                client_entity = self._by_server_id.get(entity_id)
            if msg_id is not None and msg_id in self._pending_deletes:
                self._by_server_id.pop(self._pending_deletes.pop(msg_id), None)
        return client_entity, new_view

    def close(self) -> None:
        """The session ended: its views are gone with it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.gauge is not None and self.live:
                self.gauge.dec(len(self.live))
            self.live.clear()
            self._by_server_id.clear()
            self._pending_views.clear()
            self._pending_deletes.clear()

    def _forget(self, client_id: str, keep_name_until: int | None = None) -> None:
        """Drop a view (lock held); its server name is kept until ``keep_name_until`` answers."""
        view = self.live.pop(client_id, None)
        if view is None:
            return
        if keep_name_until is not None:
            self._pending_deletes[keep_name_until] = view.server_id
        else:
            self._by_server_id.pop(view.server_id, None)
        if self.gauge is not None:
            self.gauge.dec()
