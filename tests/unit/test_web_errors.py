"""Error pages give nothing away, even for an uncaught exception and with debug on.

A real Tornado server on loopback with one handler that fails; the service's own
routes are tested in tests/integration/test_http_trust.py.
"""

from __future__ import annotations

import asyncio
import logging

from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from service.web.errors import ClientError, SafeErrors

SECRET_PATH = "/srv/livetables/service/secret_module.py"


class Failing(SafeErrors, RequestHandler):
    def get(self) -> None:
        if self.get_query_argument("client", None):
            raise ClientError(404, "no table named '%s%d'")  # % in user text is harmless
        raise RuntimeError(f"boom in {SECRET_PATH}")


def test_uncaught_exceptions_answer_a_bare_500_and_log_without_the_token(caplog):
    caplog.set_level(logging.DEBUG)

    async def scenario() -> list[tuple[int, str]]:
        app = Application([(r"/fail", Failing)], debug=True, serve_traceback=True)
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(app)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        client = AsyncHTTPClient()
        answers = []
        for query in ("token=s3cret-token-value", "client=1&%74oken=s3cret-token-value"):
            response = await client.fetch(
                f"http://127.0.0.1:{port}/fail?{query}", raise_error=False
            )
            answers.append((response.code, response.body.decode()))
        server.stop()
        await server.close_all_connections()
        return answers

    (status, body), (client_status, client_body) = asyncio.run(scenario())
    assert status == 500 and body == "500 Internal Server Error\n"
    assert client_status == 404 and client_body == "404 Not Found\nno table named '%s%d'\n"
    text = caplog.text
    assert "boom in" in text and "Traceback" in text  # the operator gets the details...
    assert "s3cret-token-value" not in text  # ...never the token
