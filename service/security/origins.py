"""Which web pages may open a websocket to this service (cross-site websocket hijacking).

A browser sends cookies with a websocket upgrade whatever page started it, so a
page on another site could otherwise open a session with the user's token.
Upgrades are accepted only from the service's own origin plus
``server.allowed_origins`` (``*`` for any). Non-browser clients send no
``Origin`` and are not affected. The same list says which other origins may
read the embedding files and the API (service/security/cors.py). Nothing here
knows Tornado.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, default ports dropped; None if unusable."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{suffix}"


class OriginPolicy:
    """The origins allowed to open websockets: this service's own, plus a configured list."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        listed = list(allowed)
        self.any_origin = "*" in listed
        self.origins = {o for o in (normalise_origin(x) for x in listed if x != "*") if o}

    def listed(self, origin: str) -> str | None:
        """``origin`` normalised if it is one of ``server.allowed_origins`` (or ``*`` is).

        Only the configured list: a page of the service itself needs no permission to
        read the service's answers, and other pages are not this service's own.
        """
        normalised = normalise_origin(origin)
        if normalised is None:
            return None
        return normalised if self.any_origin or normalised in self.origins else None

    def allows(self, origin: str, host: str | None) -> bool:
        """May a page from ``origin`` open a websocket to ``host`` (the Host header)?"""
        if self.any_origin:
            return True
        if self.listed(origin) is not None:
            return True
        normalised = normalise_origin(origin)
        if normalised is None:
            return False
        # Same origin: the Origin's host:port is the Host the browser connected to. The
        # scheme is not compared: behind a TLS-terminating proxy the browser says https.
        return host is not None and _without_default_port(urlsplit(normalised).netloc) == (
            _without_default_port(host.lower())
        )


def _without_default_port(netloc: str) -> str:
    for default in (":80", ":443"):
        if netloc.endswith(default):
            return netloc.removesuffix(default)
    return netloc
