"""Who may load a page, call the API or open a websocket, from where: the web side's policy.

The handlers (service/web/base.py) ask this module and do what it says; nothing
here knows Tornado, so every rule is unit-tested with plain values:

* :meth:`AccessPolicy.authenticate`: a token (service/security/tokens.py) to a
  :class:`~service.security.auth.Principal`, or a 401 with a ``WWW-Authenticate``
  challenge;
* :meth:`AccessPolicy.authorise`: 403 unless the principal may read every table a
  request is about (``auth.table_access``); :meth:`AccessPolicy.table_filter`
  for the listings and the websocket guard, which show only readable tables;
* :meth:`AccessPolicy.origin_allowed`: the ``Origin`` of a websocket upgrade
  (service/security/origins.py);
* :meth:`AccessPolicy.open_session`: the websocket session caps, checked before
  the upgrade so that a refused client gets a status and a reason it can read.

Every refusal is counted (``livetables_auth_failures_total{reason}``,
``livetables_websocket_rejected_requests_total{reason}``) and logged at most
once per :data:`LOG_INTERVAL_S` per reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from service.config import LivetablesConfig
from service.metrics import Metrics
from service.security.auth import ANONYMOUS, Authenticator, AuthError, Principal
from service.security.origins import OriginPolicy
from service.security.slots import SessionSlots
from service.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 5.0
SESSION_RETRY_AFTER_S = 10
SESSION_REFUSALS = {
    "sessions": "too many websocket sessions on this server (server.max_websocket_sessions)",
    "sessions_per_address": "too many websocket sessions from your address "
    "(server.max_websocket_sessions_per_address)",
}
SESSION_REASONS = tuple(SESSION_REFUSALS)
PROXY_HINT = "; if that address is a proxy or load balancer, list it in server.trusted_proxies"


@dataclass(frozen=True)
class Caller:
    """Who is asking for what, as the logs name it."""

    method: str
    path: str
    address: str


class Denied(Exception):
    """The answer to a request that is not let through: a status, a text, extra headers."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers or {}


class AccessPolicy:
    """Authentication, table access, websocket origins and session caps for one service."""

    def __init__(
        self,
        authenticator: Authenticator,
        metrics: Metrics,
        origins: OriginPolicy | None = None,
        sessions: SessionSlots | None = None,
    ) -> None:
        self.auth = authenticator
        self.metrics = metrics
        self.origins = origins or OriginPolicy()
        self.sessions = sessions or SessionSlots(1 << 30, 1 << 30)
        self._log = ThrottledLog(log, LOG_INTERVAL_S)

    @classmethod
    def from_config(cls, config: LivetablesConfig, metrics: Metrics) -> AccessPolicy:
        server = config.server
        return cls(
            Authenticator(config.auth),
            metrics,
            OriginPolicy(server.allowed_origins),
            SessionSlots(server.max_websocket_sessions, server.max_websocket_sessions_per_address),
        )

    @property
    def enabled(self) -> bool:
        """Is authentication on (``auth.enabled``)? Without it every request is anonymous."""
        return self.auth.enabled

    # -- who is asking --------------------------------------------------------------

    async def authenticate(self, token: str | None, caller: Caller) -> Principal:
        """The principal a token stands for, or :class:`Denied` (401)."""
        if not self.auth.enabled:
            return ANONYMOUS
        try:
            return await self.auth.authenticate(token)
        except AuthError as exc:
            self._refused(exc.reason, caller, exc.detail)
            challenge = 'Bearer realm="livetables"'
            if exc.reason != "missing":
                challenge += ', error="invalid_token"'
            raise Denied(
                401, "authentication required\n", {"WWW-Authenticate": challenge}
            ) from None

    # -- which tables ---------------------------------------------------------------

    def may_read(self, principal: Principal, table: str) -> bool:
        return self.auth.can_read(principal, table)

    def authorise(self, principal: Principal, tables: Iterable[str], caller: Caller) -> None:
        """Raise :class:`Denied` (403) unless ``principal`` may read every one of ``tables``."""
        forbidden = [t for t in tables if not self.may_read(principal, t)]
        if forbidden:
            self._refused("forbidden", caller, f"{principal} may not read {forbidden[0]!r}")
            raise Denied(403, "not allowed\n")

    def table_filter(self, principal: Principal) -> Callable[[str], bool] | None:
        """Which tables ``principal`` may see, or None when it may see every table."""
        return self.auth.table_filter(principal)

    # -- websockets -----------------------------------------------------------------

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """May a page from ``origin`` open a websocket here? Refusals are counted."""
        if self.origins.allows(origin, host):
            return True
        self.metrics.websocket_rejected.labels("origin").inc()
        log.info("refused a websocket from origin %r", origin[:200])
        return False

    def open_session(self, address: str) -> None:
        """Take a session slot for ``address``, or raise :class:`Denied` (503) past a cap.

        The caller gives the slot back (:meth:`close_session`) when the session ends,
        or when the upgrade ends without one."""
        refusal = self.sessions.refusal(address)
        if refusal is None:
            self.sessions.take(address)
            return
        self.metrics.websocket_rejected.labels(refusal).inc()
        hint = PROXY_HINT if refusal == "sessions_per_address" else ""
        self._log.warning(
            refusal,
            "refused a websocket from %s: %s%s",
            address,
            SESSION_REFUSALS[refusal],
            hint,
        )
        raise Denied(
            503,
            SESSION_REFUSALS[refusal] + "; try again later\n",
            {"Retry-After": str(SESSION_RETRY_AFTER_S)},
        )

    def close_session(self, address: str) -> None:
        self.sessions.give_back(address)

    def _refused(self, reason: str, caller: Caller, detail: str) -> None:
        self.metrics.auth_failures.labels(reason).inc()
        self._log.info(
            reason,
            "refused %s %s from %s: %s (%s)",
            caller.method,
            caller.path,
            caller.address,
            reason,
            detail,
        )
