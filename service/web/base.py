"""The handlers' bases: every request is authenticated before a handler method runs.

Tornado's way: ``prepare()`` authenticates and sets ``current_user`` (it must be
``prepare()``, not ``get_current_user()``: checking a JWT may wait for the
identity provider's keys, and ``get_current_user()`` cannot wait). A refused
request is answered there, so no handler method runs and no websocket is
upgraded. Each handler names the tables a request is about
(:meth:`BaseHandler.requested_tables`: 403 unless the user may read them all)
and shows only the tables its user may read (:meth:`BaseHandler.may_read`).

The rules are service/security/access.py's; these classes only apply them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import NoReturn

from tornado.ioloop import IOLoop
from tornado.web import Finish, RequestHandler
from tornado.websocket import WebSocketHandler

from service.security.access import AccessPolicy, Caller, Denied
from service.security.auth import Principal
from service.security.tokens import COOKIE, QUERY, QUERY_PARAMETER, cookie_options, token_from
from service.web.errors import SafeErrors


class BaseHandler(SafeErrors, RequestHandler):
    """Pages and the API: authenticated, and authorised for the tables the request names."""

    # A page opened with ?token= keeps the token as a cookie for the page's own requests.
    keeps_query_token = True

    @property
    def access(self) -> AccessPolicy:
        return self.settings["access"]

    def get_current_user(self) -> Principal | None:
        return None  # prepare() sets current_user; nothing asks before it has run

    @property
    def principal(self) -> Principal:
        user = self.current_user
        assert isinstance(user, Principal), "prepare() authenticates before anything asks"
        return user

    def requested_tables(self) -> Iterable[str]:
        """The tables this request is about (named in ``path_args``): 403 unless the user
        may read each."""
        return ()

    def may_read(self, table: str) -> bool:
        """May this request's user see ``table`` (in a listing, say)?"""
        return self.access.may_read(self.principal, table)

    async def prepare(self) -> None:
        request = self.request
        caller = Caller(request.method or "", request.path, request.remote_ip or "")
        token, source = token_from(
            request.headers.get("Authorization", ""),
            self.get_query_argument(QUERY_PARAMETER, None),
            self.get_cookie(COOKIE),
        )
        try:
            principal = await self.access.authenticate(token, caller)
            self.access.authorise(principal, self.requested_tables(), caller)
        except Denied as denied:
            self.refuse(denied)
        self.current_user = principal
        if token is not None and source == QUERY and self.keeps_query_token:
            self._keep_token(token, principal)

    def _keep_token(self, token: str, principal: Principal) -> None:
        if not self.access.enabled:
            return
        options = cookie_options(token, principal, https=self.request.protocol == "https")
        if options is not None:
            self.set_cookie(COOKIE, token, **options)

    def refuse(self, denied: Denied) -> NoReturn:
        """Answer a refused request here: Tornado then runs no handler method."""
        self.set_status(denied.status)
        for name, value in denied.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(denied.text)
        raise Finish()


class BaseWebSocket(BaseHandler, WebSocketHandler):
    """Websockets: also the page's ``Origin``, the session caps, and the token's expiry.

    A session slot is taken in ``prepare()`` (before the 101 answer) and given back
    when the session closes, or when the upgrade ends without a session.
    """

    keeps_query_token = False
    # Why the session ended: the label of livetables_websocket_disconnects_total. Not
    # ``close_reason``: tornado overwrites that with the text of the client's close frame.
    disconnect_reason = "client"
    _slot: str | None = None
    _expiry: object | None = None

    async def prepare(self) -> None:
        await super().prepare()
        address = self.request.remote_ip or ""
        try:
            self.access.open_session(address)
        except Denied as denied:
            self.refuse(denied)
        self._slot = address

    def check_origin(self, origin: str) -> bool:
        return self.access.origin_allowed(origin, self.request.headers.get("Host"))

    def on_finish(self) -> None:
        if self.get_status() != 101:
            self._give_back_slot()  # the upgrade did not happen: no session to wait for
        super().on_finish()

    def close_when_token_expires(self) -> None:
        """Called as the session opens: a session lives no longer than its token."""
        expires = self.principal.expires_at
        if expires is not None:
            delay = max(0.0, expires - time.time())
            self._expiry = IOLoop.current().call_later(delay, self._expired)

    def _expired(self) -> None:
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            self.disconnect_reason = "expired"
            self.close(1008, "token expired")

    def on_close(self) -> None:
        self._give_back_slot()
        if self._expiry is not None:
            IOLoop.current().remove_timeout(self._expiry)
            self._expiry = None

    def _give_back_slot(self) -> None:
        if self._slot is not None:
            self.access.close_session(self._slot)
            self._slot = None
