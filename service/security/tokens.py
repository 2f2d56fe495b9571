"""Where a request's token comes from, where it is kept, and where it must never show.

Tokens are read from, in order: the ``Authorization: Bearer`` header, the
``token`` query parameter, the ``livetables_token`` cookie. A page loaded with
``?token=`` keeps it in that cookie (HttpOnly, SameSite=Lax), so the page's
websockets and API calls, and pages opened from it, are authenticated too.

A token in a URL would otherwise end up in every access log line: :func:`redact`
masks it. Nothing here knows Tornado: header, query and cookie values in, a
token out.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import unquote_plus

from service.security.auth import Principal

COOKIE = "livetables_token"
QUERY_PARAMETER = "token"
HEADER = "header"
QUERY = "query"
COOKIE_SOURCE = "cookie"
NONE = "none"

_QUERY_PAIR = re.compile(r"([?&])([^=&\s#]*)=([^&\s#]*)")
# What may go into a cookie value as it is (RFC 6265 cookie-octets, less a few).
_COOKIE_SAFE = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


def token_from(authorization: str, query: str | None, cookie: str | None) -> tuple[str | None, str]:
    """The request's token and where it came from: ``header``, ``query``, ``cookie`` or ``none``."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), HEADER
    if query:
        return query, QUERY
    if cookie:
        return cookie, COOKIE_SOURCE
    return None, NONE


def cookie_options(token: str, principal: Principal, https: bool) -> dict[str, Any] | None:
    """How to keep a token given in a page's URL as a cookie; None if it cannot be kept.

    The cookie lives no longer than the token (a JWT's expiry) and is sent only to
    this service, never read by scripts, never sent on cross-site subrequests.
    """
    if not _COOKIE_SAFE.match(token):
        return None
    options: dict[str, Any] = {"httponly": True, "samesite": "Lax", "path": "/"}
    if https:
        options["secure"] = True
    if principal.expires_at is not None:
        options["max_age"] = max(0, int(principal.expires_at - time.time()))
    return options


def redact(text: str) -> str:
    """A request line with any token query parameter masked, for logs.

    Names are compared after percent-decoding, as Tornado decodes them when it reads
    the token: ``?%74oken=...`` authenticates, so it is masked too."""

    def mask(pair: re.Match[str]) -> str:
        if unquote_plus(pair.group(2)).strip().lower() == QUERY_PARAMETER:
            return f"{pair.group(1)}{pair.group(2)}=***"
        return pair.group(0)

    return _QUERY_PAIR.sub(mask, text)
