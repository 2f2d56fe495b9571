"""Who is asking: static bearer tokens and OIDC JWTs, and which tables they may read.

Nothing here knows about Tornado: :class:`Authenticator` turns a token into a
:class:`Principal` or raises :class:`AuthError` with a short reason (the label
of ``livetables_auth_failures_total``). Tokens are never logged.

JWTs are checked against the provider's JWKS: signature (asymmetric algorithms
only), ``iss``, ``aud``, ``exp`` (required) and ``nbf``, with a small leeway for
clock skew. The JWKS is fetched lazily, cached, and refetched when a token names
a key id not in the cache (a key rotation), but at most once per
``JWKS_MIN_REFRESH_S``: a flood of tokens with made-up key ids cannot turn into
a flood of requests to the provider.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from service.config import AuthConfig, OidcConfig, TableAccessConfig

log = logging.getLogger(__name__)

JWKS_MIN_REFRESH_S = 30.0
JWKS_FETCH_TIMEOUT_S = 10.0
MAX_TOKEN_BYTES = 16 * 1024


class AuthError(Exception):
    """Authentication failed; ``reason`` is one of a small fixed set."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason  # missing | invalid | expired | issuer | audience | keys
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str  # "token" | "jwt" | "anonymous"
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None  # epoch seconds

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


ANONYMOUS = Principal("anonymous", "anonymous")

Fetch = Callable[[str], Awaitable[bytes]]


async def _fetch_with_tornado(url: str) -> bytes:
    from tornado.httpclient import AsyncHTTPClient

    response = await AsyncHTTPClient().fetch(
        url,
        connect_timeout=JWKS_FETCH_TIMEOUT_S,
        request_timeout=JWKS_FETCH_TIMEOUT_S,
        headers={"Accept": "application/json"},
    )
    return response.body


class JwksCache:
    """The provider's signing keys by key id, fetched on demand and cached."""

    def __init__(self, url: str, max_age: float, fetch: Fetch | None = None) -> None:
        self.url = url
        self.max_age = max_age
        self._fetch = fetch or _fetch_with_tornado
        self._keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
        self._fetched_at = -1e18
        self._inflight: asyncio.Future[None] | None = None

    async def key(self, kid: str | None) -> tuple[jwt.PyJWK, str | None]:
        """The key with this id and the algorithm its JWK pins (None if it pins none)."""
        now = time.monotonic()
        if now - self._fetched_at > self.max_age or (
            kid not in self._keys and now - self._fetched_at > JWKS_MIN_REFRESH_S
        ):
            await self._refresh()
        found = self._keys.get(kid)
        if found is None and kid is None and len(self._keys) == 1:
            found = next(iter(self._keys.values()))
        if found is None:
            raise AuthError("invalid", f"no signing key {kid!r} in the provider's JWKS")
        return found

    async def _refresh(self) -> None:
        # Concurrent requests share one fetch.
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._load())
        inflight = self._inflight
        try:
            await asyncio.shield(inflight)
        finally:
            if self._inflight is inflight and inflight.done():
                self._inflight = None

    async def _load(self) -> None:
        try:
            body = await self._fetch(self.url)
            document = json.loads(body)
            keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
            for entry in document.get("keys", []):
                if entry.get("use", "sig") != "sig":
                    continue
                try:
                    keys[entry.get("kid")] = (jwt.PyJWK(entry), entry.get("alg"))
                except jwt.PyJWTError as exc:
                    log.warning("JWKS %s: skipping a key it has (%s)", self.url, exc)
        except Exception as exc:
            # Keep serving with the keys we had; retry after the minimum interval.
            self._fetched_at = time.monotonic() - self.max_age + JWKS_MIN_REFRESH_S
            log.warning("cannot fetch the JWKS from %s: %s", self.url, exc)
            if not self._keys:
                raise AuthError("keys", "the identity provider's keys are unavailable") from None
            return
        self._keys = keys
        self._fetched_at = time.monotonic()
        log.info("JWKS %s: %d signing key(s)", self.url, len(keys))


class Authenticator:
    """Checks tokens and decides per-table access, as the ``auth:`` section says."""

    def __init__(self, config: AuthConfig, fetch: Fetch | None = None) -> None:
        self.config = config
        self.enabled = config.enabled
        self._tokens = [
            (name, token.encode("utf-8")) for name, token in config.static_tokens().items()
        ]
        self.oidc: OidcConfig | None = config.oidc
        self.jwks = (
            JwksCache(config.oidc.jwks_url, config.oidc.jwks_cache_seconds, fetch)
            if config.oidc is not None
            else None
        )
        self.table_access: Mapping[str, TableAccessConfig] = config.table_access

    async def authenticate(self, token: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        if not token:
            raise AuthError("missing", "no token")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("invalid", "token too long")
        principal = self._static(token)
        if principal is not None:
            return principal
        if self.oidc is not None and token.count(".") == 2:
            return await self._jwt(token)
        raise AuthError("invalid", "unknown token")

    def _static(self, token: str) -> Principal | None:
        given = token.encode("utf-8")
        match = None
        for name, expected in self._tokens:
            # Every token is compared, in constant time each.
            if hmac.compare_digest(given, expected) and match is None:
                match = name
        return Principal(match, "token") if match is not None else None

    async def _jwt(self, token: str) -> Principal:
        assert self.oidc is not None and self.jwks is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("invalid", "malformed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.oidc.algorithms:
            raise AuthError("invalid", f"JWT algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("invalid", "malformed key id")
        key, pinned = await self.jwks.key(kid)
        if pinned is not None and pinned != algorithm:
            raise AuthError("invalid", "the key does not match the JWT algorithm")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.oidc.audience,
                issuer=self.oidc.issuer,
                leeway=self.oidc.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired", "token expired") from None
        except jwt.InvalidIssuerError:
            raise AuthError("issuer", "token from another issuer") from None
        except jwt.InvalidAudienceError:
            raise AuthError("audience", "token for another audience") from None
        except jwt.PyJWTError as exc:
            raise AuthError("invalid", f"invalid JWT: {exc}") from None
        name = str(claims.get(self.oidc.name_claim) or claims.get("sub") or "?")
        # Sessions opened with it end when it expires (leeway included, as at the door).
        return Principal(name, "jwt", claims, float(claims["exp"]) + self.oidc.leeway_seconds)

    # -- tables ---------------------------------------------------------------

    @property
    def restricts_tables(self) -> bool:
        return self.enabled and bool(self.table_access)

    def can_read(self, principal: Principal, table: str) -> bool:
        if not self.enabled:
            return True
        rule = self.table_access.get(table)
        if rule is None:
            return True
        if principal.kind == "token" and principal.name in rule.tokens:
            return True
        for claim, accepted in rule.claims.items():
            value = principal.claims.get(claim)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, str | int) and str(v) in accepted for v in values):
                return True
        return False

    def table_filter(self, principal: Principal) -> Callable[[str], bool] | None:
        """A per-table check for this principal, or None when every table is open to it."""
        if not self.restricts_tables:
            return None
        return lambda table: self.can_read(principal, table)
