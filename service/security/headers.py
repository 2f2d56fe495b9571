"""Response headers every answer carries: pages, API, errors, static files, upgrades.

Added as a Tornado output transform, so no handler (including Tornado's own error
pages and the websocket handshake) can forget them:

- ``X-Content-Type-Options: nosniff``: a JSON or text answer that echoes a table
  name is never sniffed into HTML.
- ``Referrer-Policy: same-origin``: a page opened with ``?token=`` never sends its
  URL to another site in ``Referer``.
- ``Content-Security-Policy``: scripts only from this service (the pages load
  nothing from elsewhere; ``'wasm-unsafe-eval'`` lets Perspective compile its
  WebAssembly), no inline script, and framing only by this origin plus
  ``server.frame_ancestors``. Styles may be inline: the viewer's web components
  set them at run time, and a style cannot run code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import OutputTransform


def content_security_policy(frame_ancestors: Iterable[str] = ()) -> str:
    ancestors = " ".join(["'self'", *frame_ancestors])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {ancestors}",
        ]
    )


def security_headers(frame_ancestors: Iterable[str] = ()) -> dict[str, str]:
    extra = list(frame_ancestors)
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": content_security_policy(extra),
    }
    if not extra:
        # For browsers that predate frame-ancestors.
        headers["X-Frame-Options"] = "SAMEORIGIN"
    return headers


def header_transform(frame_ancestors: Iterable[str] = ()) -> type[OutputTransform]:
    """An output transform class that sets :func:`security_headers` on every response."""
    fixed = security_headers(frame_ancestors)

    class SecurityHeaders(OutputTransform):
        def __init__(self, request: HTTPServerRequest) -> None:
            super().__init__(request)

        def transform_first_chunk(
            self, status_code: int, headers: HTTPHeaders, chunk: bytes, finishing: bool
        ) -> tuple[int, HTTPHeaders, bytes]:
            for name, value in fixed.items():
                headers[name] = value
            return status_code, headers, chunk

    return SecurityHeaders


def raw_response(status: int, reason: str, text: str, extra: dict[str, Any] | None = None) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response, for answers written below Tornado."""
    body = text.encode("utf-8")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
        *(f"{k}: {v}" for k, v in security_headers().items()),
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
