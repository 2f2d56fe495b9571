"""The Tornado application: every route on one port."""

from __future__ import annotations

import logging
from typing import Any

from tornado.ioloop import IOLoop
from tornado.web import Application, RequestHandler, StaticFileHandler

from service.security.access import SESSION_REASONS, AccessPolicy
from service.security.cors import CorsPolicy, cors_transform
from service.security.guard import GuardPolicy
from service.security.headers import header_transform
from service.security.refusals import REASONS
from service.security.tokens import redact
from service.state import ServiceState
from service.web.api import Healthz, MetricsEndpoint, Readyz, TablesApi
from service.web.assets import STATIC_DIR, TEMPLATE_DIR, perspective_assets_dir
from service.web.errors import NotFound, SafeErrors
from service.web.fanout import ReplicaFanout
from service.web.pages import DashboardPage, IndexPage, TablePage
from service.web.websocket import PerspectiveWebSocket, ReplicateWebSocket

log = logging.getLogger(__name__)

QUIET_PATHS = ("/healthz", "/readyz", "/metrics")
access_log = logging.getLogger("tornado.access")


def log_request(handler: RequestHandler) -> None:
    """Access log: probes and scrapes at DEBUG (they come every few seconds), errors at WARNING."""
    status = handler.get_status()
    quiet = handler.request.path in QUIET_PATHS or handler.request.path.startswith("/static/")
    level = logging.DEBUG if quiet else logging.WARNING if status >= 500 else logging.INFO
    access_log.log(
        level,
        "%d %s %.1fms",
        status,
        redact(handler._request_summary()),
        1000.0 * handler.request.request_time(),
    )


class StaticHandler(SafeErrors, StaticFileHandler):
    """The service's own scripts and styles."""


class AssetHandler(StaticHandler):
    """Versioned npm files: cacheable for a day (the version is pinned in package.json)."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "public, max-age=86400")


def make_app(state: ServiceState, sessions: set[Any]) -> Application:
    assets = perspective_assets_dir()
    if assets is None:
        from service.web.assets import MISSING_ASSETS_HELP

        log.warning("pages disabled: %s", MISSING_ASSETS_HELP)
    pages = {"state": state, "assets_ok": assets is not None}
    common = {"state": state}
    # Who may do what: service/security. Handlers ask; the rules are there.
    access = AccessPolicy.from_config(state.config, state.metrics)
    for reason in (*REASONS, *SESSION_REASONS):
        state.metrics.websocket_rejected.labels(reason)
    server = state.config.server
    socket_options = {
        "metrics": state.metrics,
        "sessions": sessions,
        "max_buffer_bytes": server.max_client_buffer_bytes,
    }
    engine_options = {
        "workers": state.host.workers,
        "max_requests_per_second": server.max_requests_per_second,
        "max_pending_requests": server.max_pending_requests,
        # Requests waiting are held in memory: a few of the largest allowed, in all.
        "max_pending_bytes": 4 * server.max_request_bytes,
    }
    routes: list[Any] = [
        (r"/", IndexPage, pages),
        (r"/tables/([^/]+)", TablePage, pages),
        (r"/dashboards/([^/]+)", DashboardPage, pages),
        (
            r"/websocket",
            PerspectiveWebSocket,
            {
                "server": state.host.server,
                # The host answers the guard's questions about a table (rows, distinct values).
                "guard_policy": GuardPolicy.from_config(state.config),
                "facts": state.host,
                **engine_options,
                **socket_options,
            },
        ),
        (
            r"/replicate/([^/]+)",
            ReplicateWebSocket,
            {
                "replicator": state.replicator,
                "tables": state.config.tables,
                "workers": state.host.workers,
                "max_snapshot_bytes": server.max_snapshot_bytes,
                "fanout": ReplicaFanout(IOLoop.current(), state.metrics),
                **socket_options,
            },
        ),
        (r"/api/tables", TablesApi, common),
        (r"/healthz", Healthz, common),
        (r"/readyz", Readyz, common),
        (r"/metrics", MetricsEndpoint, common),
        (r"/static/livetables/(.*)", StaticHandler, {"path": str(STATIC_DIR)}),
    ]
    if assets is not None:
        routes.append((r"/static/perspective/(.*)", AssetHandler, {"path": str(assets)}))
    return Application(
        routes,
        template_path=str(TEMPLATE_DIR),
        # Refused from the frame header (close code 1009), before the payload is read.
        websocket_max_message_size=server.max_request_bytes,
        websocket_ping_interval=server.websocket_ping_interval_seconds,
        websocket_ping_timeout=server.websocket_ping_timeout_seconds,
        log_function=log_request,
        default_handler_class=NotFound,
        # Security headers on every answer; CORS on what embedding pages of the
        # server.allowed_origins load (service/security/cors.py).
        transforms=[
            header_transform(server.frame_ancestors),
            cors_transform(CorsPolicy(access.origins)),
        ],
        access=access,  # read by every handler's prepare() (service/web/base.py)
    )
