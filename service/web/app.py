"""The Tornado application: every route on one port."""

from __future__ import annotations

import logging
from typing import Any

from tornado.web import Application, RequestHandler

from service.state import ServiceState
from service.web.api import Healthz, MetricsEndpoint, Readyz, TablesApi
from service.web.pages import IndexPage
from service.web.websocket import PerspectiveWebSocket

MAX_WEBSOCKET_MESSAGE = 16 * 1024 * 1024
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")
access_log = logging.getLogger("tornado.access")


def log_request(handler: RequestHandler) -> None:
    """Access log: probes and scrapes at DEBUG (they come every few seconds), errors at WARNING."""
    status = handler.get_status()
    quiet = handler.request.path in QUIET_PATHS
    level = logging.DEBUG if quiet else logging.WARNING if status >= 500 else logging.INFO
    access_log.log(
        level,
        "%d %s %.1fms",
        status,
        handler._request_summary(),
        1000.0 * handler.request.request_time(),
    )


def make_app(state: ServiceState, sessions: set[Any]) -> Application:
    common = {"state": state}
    return Application(
        [
            (r"/", IndexPage, common),
            (
                r"/websocket",
                PerspectiveWebSocket,
                {"server": state.host.server, "metrics": state.metrics, "sessions": sessions},
            ),
            (r"/api/tables", TablesApi, common),
            (r"/healthz", Healthz, common),
            (r"/readyz", Readyz, common),
            (r"/metrics", MetricsEndpoint, common),
        ],
        websocket_max_message_size=MAX_WEBSOCKET_MESSAGE,
        websocket_ping_interval=20,
        websocket_ping_timeout=30,
        log_function=log_request,
    )
