"""Error pages and request logs that give nothing away.

Every handler of the app mixes in :class:`SafeErrors`:

- error pages are short plain text: the status, and for a :class:`ClientError`
  its message (written for the client: "no table named 'x'"). Never a stack
  trace, a file path or an exception's text, whatever ``debug`` says;
- the request is logged with any ``token`` query parameter masked (also when its
  name is percent-encoded), and without Tornado's dump of the request object,
  which would print the URL verbatim; user text in a message is never used as a
  %-format string.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from tornado.web import HTTPError, RequestHandler

from service.security.tokens import redact

app_log = logging.getLogger("tornado.application")
gen_log = logging.getLogger("tornado.general")


class ClientError(HTTPError):
    """An HTTP error whose message is meant for the client and shown on the error page."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code, message)


def _message(error: HTTPError) -> str:
    try:
        return error.get_message() or ""
    except (TypeError, ValueError):
        return repr(error.args)


class SafeErrors:
    """Mixed in front of a RequestHandler: safe error pages, masked request logs."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        handler: Any = self
        error = kwargs.get("exc_info", (None, None, None))[1]
        text = f"{status_code} {handler._reason}\n"
        if isinstance(error, ClientError):
            text += _message(error).rstrip("\n") + "\n"
        handler.set_header("Content-Type", "text/plain; charset=utf-8")
        handler.set_header("Cache-Control", "no-store")
        handler.finish(text)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        summary = self._request_summary()
        if isinstance(value, ClientError):
            return  # the client's mistake, answered with its message; the access log has it
        if isinstance(value, HTTPError):
            if _message(value):
                gen_log.warning("%d %s: %s", value.status_code, summary, _message(value))
        else:
            app_log.error("uncaught exception in %s", summary, exc_info=value)

    def _request_summary(self) -> str:
        request = self.request  # type: ignore[attr-defined]
        return redact(f"{request.method} {request.uri} ({request.remote_ip})")


class NotFound(SafeErrors, RequestHandler):
    """Every path no route matches."""

    def prepare(self) -> None:
        raise HTTPError(404)
