"""Tornado side of the policy: who may load a page or open a websocket, from where.

:func:`protect` derives a handler class that authenticates in ``prepare()``
(before a websocket upgrade, so a refused client never gets a session), checks
the tables a route is about, and for websockets checks the ``Origin`` header.
The handlers themselves stay unaware of all this.

Tokens are read from, in order: the ``Authorization: Bearer`` header, the
``token`` query parameter, the ``livetables_token`` cookie. A page loaded with
``?token=`` stores it in that cookie (HttpOnly, SameSite=Lax), so the page's
websockets and API calls, and pages opened from it, are authenticated too.

Cross-site websocket hijacking: a browser sends cookies with a websocket
upgrade whatever page started it, so upgrades are accepted only from the
server's own origin plus the configured ``server.allowed_origins``.
Non-browser clients send no ``Origin`` and are not affected.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from tornado.ioloop import IOLoop
from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler

from service.metrics import Metrics
from service.security.auth import ANONYMOUS, Authenticator, AuthError, Principal
from service.security.cost import CostLimits, TableFacts
from service.security.guard import REASONS, GuardPolicy, SessionGuard

log = logging.getLogger(__name__)

COOKIE = "livetables_token"
QUERY_PARAMETER = "token"
LOG_INTERVAL_S = 5.0
_QUERY_PAIR = re.compile(r"([?&])([^=&\s#]*)=([^&\s#]*)")
_COOKIE_SAFE = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
SESSION_REASONS = ("sessions", "sessions_per_address")

TablesOf = Callable[[RequestHandler, tuple[str, ...]], Iterable[str]]


def redact(text: str) -> str:
    """A request line with any token query parameter masked, for logs.

    Names are compared after percent-decoding, as Tornado decodes them when it reads
    the token: ``?%74oken=...`` authenticates, so it is masked too."""

    def mask(pair: re.Match[str]) -> str:
        if unquote_plus(pair.group(2)).strip().lower() == QUERY_PARAMETER:
            return f"{pair.group(1)}{pair.group(2)}=***"
        return pair.group(0)

    return _QUERY_PAIR.sub(mask, text)


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, default ports dropped; None if unusable."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{host}{suffix}"


class Denied(Exception):
    """The answer to a request the gate does not let through."""

    def __init__(self, status: int, text: str, challenge: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.challenge = challenge


class SessionSlots:
    """Open websocket sessions, in total and per client address, against their caps.

    A slot is taken when the upgrade is admitted (before the 101 answer) and given
    back when the session closes, or when the upgrade ends without a session."""

    def __init__(self, total: int, per_address: int) -> None:
        self.max_total = total
        self.max_per_address = per_address
        self.total = 0
        self.by_address: Counter[str] = Counter()

    def refusal(self, address: str) -> str | None:
        if self.total >= self.max_total:
            return "sessions"
        if self.by_address[address] >= self.max_per_address:
            return "sessions_per_address"
        return None

    def take(self, address: str) -> None:
        self.total += 1
        self.by_address[address] += 1

    def give_back(self, address: str) -> None:
        self.total -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


_SESSION_REFUSALS = {
    "sessions": "too many websocket sessions on this server (server.max_websocket_sessions)",
    "sessions_per_address": "too many websocket sessions from your address "
    "(server.max_websocket_sessions_per_address)",
}


class Gate:
    """Everything the handlers need to admit a request: auth, table access, origins."""

    def __init__(
        self,
        authenticator: Authenticator,
        metrics: Metrics,
        allowed_origins: Iterable[str] = (),
        sessions: SessionSlots | None = None,
    ) -> None:
        self.auth = authenticator
        self.metrics = metrics
        self.sessions = sessions or SessionSlots(1 << 30, 1 << 30)
        origins = list(allowed_origins)
        self.any_origin = "*" in origins
        self.origins = {o for o in (normalise_origin(x) for x in origins if x != "*") if o}
        self._logged_at: dict[str, float] = {}

    # -- authentication -------------------------------------------------------------

    @staticmethod
    def token_of(handler: RequestHandler) -> tuple[str | None, str]:
        """The request's token and where it came from (header, query, cookie)."""
        header = handler.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), "header"
        query = handler.get_query_argument(QUERY_PARAMETER, None)
        if query:
            return query, "query"
        cookie = handler.get_cookie(COOKIE)
        if cookie:
            return cookie, "cookie"
        return None, "none"

    async def admit(self, handler: RequestHandler, tables: Iterable[str]) -> Principal:
        """Authenticate and authorise a request, or raise :class:`Denied`."""
        if not self.auth.enabled:
            return ANONYMOUS
        token, source = self.token_of(handler)
        try:
            principal = await self.auth.authenticate(token)
        except AuthError as exc:
            self._refused(exc.reason, handler, exc.detail)
            challenge = 'Bearer realm="livetables"'
            if exc.reason != "missing":
                challenge += ', error="invalid_token"'
            raise Denied(401, "authentication required\n", challenge) from None
        forbidden = [t for t in tables if not self.auth.can_read(principal, t)]
        if forbidden:
            self._refused("forbidden", handler, f"{principal} may not read {forbidden[0]!r}")
            raise Denied(403, "not allowed\n")
        if source == "query" and not _is_websocket(handler):
            self._remember(handler, token, principal)
        return principal

    def _remember(self, handler: RequestHandler, token: str | None, principal: Principal) -> None:
        """Keep a token given in a page's URL as a cookie, for the rest of the page."""
        if token is None or not _COOKIE_SAFE.match(token):
            return
        options: dict[str, Any] = {"httponly": True, "samesite": "Lax", "path": "/"}
        if handler.request.protocol == "https":
            options["secure"] = True
        if principal.expires_at is not None:
            options["max_age"] = max(0, int(principal.expires_at - time.time()))
        handler.set_cookie(COOKIE, token, **options)

    def refused_session(self, reason: str, address: str) -> None:
        now = time.monotonic()
        if now - self._logged_at.get(reason, -LOG_INTERVAL_S) >= LOG_INTERVAL_S:
            self._logged_at[reason] = now
            hint = (
                "; if that address is a proxy or load balancer, list it in server.trusted_proxies"
                if reason == "sessions_per_address"
                else ""
            )
            log.warning(
                "refused a websocket from %s: %s%s", address, _SESSION_REFUSALS[reason], hint
            )

    def _refused(self, reason: str, handler: RequestHandler, detail: str) -> None:
        self.metrics.auth_failures.labels(reason).inc()
        now = time.monotonic()
        if now - self._logged_at.get(reason, -LOG_INTERVAL_S) >= LOG_INTERVAL_S:
            self._logged_at[reason] = now
            log.info(
                "refused %s %s from %s: %s (%s)",
                handler.request.method,
                handler.request.path,
                handler.request.remote_ip,
                reason,
                detail,
            )

    # -- origins --------------------------------------------------------------------

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        if self.any_origin:
            return True
        normalised = normalise_origin(origin)
        if normalised is None:
            return False
        if normalised in self.origins:
            return True
        # Same origin: the Origin's host:port is the Host the browser connected to. The
        # scheme is not compared: behind a TLS-terminating proxy the browser says https.
        return host is not None and _without_default_port(urlsplit(normalised).netloc) == (
            _without_default_port(host.lower())
        )

    # -- websocket sessions ---------------------------------------------------------

    def guard_for(
        self, policy: GuardPolicy, principal: Principal | None, facts: TableFacts | None = None
    ) -> SessionGuard:
        return SessionGuard(
            policy,
            can_read=self.auth.table_filter(principal or ANONYMOUS),
            views_gauge=self.metrics.websocket_views,
            facts=facts,
        )


def _without_default_port(netloc: str) -> str:
    for default in (":80", ":443"):
        if netloc.endswith(default):
            return netloc.removesuffix(default)
    return netloc


def _is_websocket(handler: RequestHandler) -> bool:
    return handler.request.headers.get("Upgrade", "").lower() == "websocket"


class _ProtectedPage:
    """Mixed in front of a page or API handler by :func:`protect`."""

    gate: Gate
    tables_of: TablesOf | None = None
    principal: Principal | None = None

    async def prepare(self) -> None:
        handler: Any = self
        tables = self.tables_of(handler, handler.path_args) if self.tables_of else ()
        try:
            self.principal = await self.gate.admit(handler, tables)
        except Denied as denied:
            # Answered here: tornado then runs no handler method (and upgrades no websocket).
            handler.set_status(denied.status)
            if denied.challenge is not None:
                handler.set_header("WWW-Authenticate", denied.challenge)
            handler.set_header("Content-Type", "text/plain; charset=utf-8")
            handler.set_header("Cache-Control", "no-store")
            handler.finish(denied.text)
            return
        visible = self.gate.auth.table_filter(self.principal)
        if visible is not None and hasattr(handler, "state"):
            handler.state = _VisibleState(handler.state, visible)
        result = super().prepare()  # type: ignore[misc]
        if result is not None:
            await result


class _VisibleState:
    """The service state as a restricted principal sees it: only the tables it may read."""

    def __init__(self, state: Any, visible: Callable[[str], bool]) -> None:
        self._state = state
        self._visible = visible

    def tables_summary(self) -> list[dict[str, Any]]:
        return [t for t in self._state.tables_summary() if self._visible(t["name"])]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)


class _ProtectedSocket(_ProtectedPage):
    """Mixed in front of a websocket handler: also session caps, origins and token expiry."""

    _slot: str | None = None

    async def prepare(self) -> None:
        await super().prepare()
        handler: Any = self
        if handler._finished:
            return  # refused by the gate
        address = handler.request.remote_ip
        refusal = self.gate.sessions.refusal(address)
        if refusal is not None:
            # Refused before the upgrade, with a status and a reason a person can read.
            self.gate.metrics.websocket_rejected.labels(refusal).inc()
            self.gate.refused_session(refusal, address)
            handler.set_status(503)
            handler.set_header("Content-Type", "text/plain; charset=utf-8")
            handler.set_header("Cache-Control", "no-store")
            handler.set_header("Retry-After", "10")
            handler.finish(_SESSION_REFUSALS[refusal] + "; try again later\n")
            return
        self.gate.sessions.take(address)
        self._slot = address

    def on_finish(self) -> None:
        handler: Any = self
        if handler.get_status() != 101:
            self._give_back_slot()  # the upgrade did not happen: no session to wait for
        super().on_finish()  # type: ignore[misc]

    def _give_back_slot(self) -> None:
        if self._slot is not None:
            self.gate.sessions.give_back(self._slot)
            self._slot = None

    def check_origin(self, origin: str) -> bool:
        handler: Any = self
        allowed = self.gate.origin_allowed(origin, handler.request.headers.get("Host"))
        if not allowed:
            self.gate.metrics.websocket_rejected.labels("origin").inc()
            log.info("refused a websocket from origin %r", origin[:200])
        return allowed

    def open(self, *args: str, **kwargs: str) -> Any:
        result = super().open(*args, **kwargs)  # type: ignore[misc]
        expires = self.principal.expires_at if self.principal is not None else None
        if expires is not None:
            loop = IOLoop.current()
            self._expiry = loop.call_later(max(0.0, expires - time.time()), self._expired)
        return result

    def _expired(self) -> None:
        handler: Any = self
        if handler.ws_connection is not None and not handler.ws_connection.is_closing():
            handler.disconnect_reason = "expired"
            handler.close(1008, "token expired")

    def on_close(self) -> None:
        self._give_back_slot()
        expiry = getattr(self, "_expiry", None)
        if expiry is not None:
            IOLoop.current().remove_timeout(expiry)
        super().on_close()  # type: ignore[misc]


def protect(
    handler: type[RequestHandler], gate: Gate, tables_of: TablesOf | None = None
) -> type[RequestHandler]:
    """``handler`` behind the gate: authenticated, authorised for ``tables_of``'s tables."""
    namespace: dict[str, Any] = {"gate": gate}
    if tables_of is not None:
        namespace["tables_of"] = staticmethod(tables_of)
    mixin = _ProtectedSocket if issubclass(handler, WebSocketHandler) else _ProtectedPage
    return type(handler.__name__, (mixin, handler), namespace)


def table_in_path(_handler: RequestHandler, path_args: tuple[str, ...]) -> list[str]:
    """Routes like ``/tables/{name}``: the table is the first path argument."""
    return list(path_args[:1])


def security_for(
    config: Any, metrics: Metrics, facts: TableFacts | None = None
) -> tuple[Gate, Callable[[Any], SessionGuard], TablesOf]:
    """The gate, the websocket guard factory and the dashboard-tables rule for a config.

    ``facts`` (the table host) lets the guard price views before the engine builds them.
    """
    server = config.server
    sessions = SessionSlots(
        server.max_websocket_sessions, server.max_websocket_sessions_per_address
    )
    gate = Gate(Authenticator(config.auth), metrics, server.allowed_origins, sessions)
    policy = GuardPolicy(
        tables=frozenset(config.tables),
        editable=frozenset(name for name, t in config.tables.items() if t.editable),
        max_views=config.server.max_views_per_session,
        max_request_bytes=config.server.max_request_bytes,
        max_rejected=config.server.max_rejected_requests,
        costs=CostLimits(
            max_expressions_per_view=config.server.max_expressions_per_view,
            max_expression_length=config.server.max_expression_length,
            max_pivot_columns=config.server.max_pivot_columns,
            max_view_cells=config.server.max_view_cells,
            max_session_cells=config.server.max_session_cells,
            max_serialized_cells=config.server.max_serialized_cells,
        ),
    )
    for reason in (*REASONS, *SESSION_REASONS):
        metrics.websocket_rejected.labels(reason)

    def make_guard(handler: Any) -> SessionGuard:
        return gate.guard_for(policy, getattr(handler, "principal", None), facts)

    def dashboard_tables(_handler: RequestHandler, path_args: tuple[str, ...]) -> list[str]:
        dashboard = config.dashboards.get(path_args[0]) if path_args else None
        return sorted({p.table for p in dashboard.panels}) if dashboard is not None else []

    return gate, make_guard, dashboard_tables
