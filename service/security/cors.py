"""Which pages on other origins may read which answers: CORS for embedding.

An app on another origin embeds live tables by importing
``/static/livetables/embed.js``, which imports the Perspective modules this
service serves and fetches their WebAssembly; it may also ask ``/api/tables``
which tables it can show. A browser lets a page read such cross-origin answers
(and run a cross-origin module at all) only if they carry
``Access-Control-Allow-Origin`` naming the page's origin.

Exactly the origins of ``server.allowed_origins`` get it, and only on those
paths: a page of any other origin gets no CORS header at all, so its browser
refuses to hand it the files or the API's answer. The feed itself is a
websocket, which CORS does not cover: its ``Origin`` is checked before the
upgrade (service/security/origins.py, the same list).

``Vary: Origin`` goes on every answer of those paths, allowed or not: the
answer depends on the asking origin, so no cache (the browser's own included)
may hand one origin's answer to another. No credentials are shared
(``Access-Control-Allow-Credentials`` is never sent): embedding pages pass
their token explicitly, and cookies stay with the service's own pages.
"""

from __future__ import annotations

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import OutputTransform

from service.security.origins import OriginPolicy

# The files an embedding page loads, and the API it may ask.
SHARED_PREFIXES = ("/static/livetables/", "/static/perspective/")
SHARED_PATHS = frozenset({"/api/tables"})
# A preflight (sent before a request with an Authorization header) may be cached this long.
PREFLIGHT_MAX_AGE_S = 600


def shared(path: str) -> bool:
    """Is ``path`` one that pages on the allowed origins may read?"""
    return path in SHARED_PATHS or path.startswith(SHARED_PREFIXES)


class CorsPolicy:
    """The CORS headers of an answer, from the request's path, method and ``Origin``."""

    def __init__(self, origins: OriginPolicy) -> None:
        self.origins = origins

    def headers(
        self, path: str, origin: str | None, method: str = "GET", preflight: bool = False
    ) -> dict[str, str]:
        """Headers to add to the answer (none for paths that are not shared).

        ``preflight``: the request is an ``OPTIONS`` with ``Access-Control-Request-Method``.
        """
        if not shared(path):
            return {}
        headers = {"Vary": "Origin"}
        allowed = self.origins.listed(origin) if origin else None
        if allowed is None:
            return headers
        # The origin as browsers spell it (they compare it byte for byte), never the raw
        # header: nothing the client sent is echoed.
        headers["Access-Control-Allow-Origin"] = allowed
        if preflight and method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = "GET"
            headers["Access-Control-Allow-Headers"] = "Authorization"
            headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
        return headers


def cors_transform(policy: CorsPolicy) -> type[OutputTransform]:
    """An output transform class adding :meth:`CorsPolicy.headers` to every answer.

    A transform, not a handler method, so that every answer of a shared path gets
    them: files, ``304 Not Modified``, errors and refusals (a cross-origin page can
    then read a 401 as a 401, not as a network error).
    """

    class CrossOrigin(OutputTransform):
        def __init__(self, request: HTTPServerRequest) -> None:
            super().__init__(request)
            self.request = request

        def transform_first_chunk(
            self, status_code: int, headers: HTTPHeaders, chunk: bytes, finishing: bool
        ) -> tuple[int, HTTPHeaders, bytes]:
            request = self.request
            added = policy.headers(
                request.path,
                request.headers.get("Origin"),
                request.method or "GET",
                preflight="Access-Control-Request-Method" in request.headers,
            )
            for name, value in added.items():
                if name == "Vary" and "Vary" in headers:
                    # Tornado's static files vary on Accept-Encoding already: keep both.
                    values = [v.strip() for v in headers["Vary"].split(",")]
                    if "Origin" not in values:
                        headers["Vary"] = ", ".join([*values, "Origin"])
                else:
                    headers[name] = value
            return status_code, headers, chunk

    return CrossOrigin
