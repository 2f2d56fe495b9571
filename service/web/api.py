"""JSON and plain-text endpoints: /api/tables, /healthz, /readyz, /metrics.

Handlers only read state the ingest threads publish; none of them waits on a
table update or calls into Kafka.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.web import RequestHandler

from service.state import ServiceState
from service.web.base import BaseHandler
from service.web.errors import SafeErrors


def write_json(handler: RequestHandler, payload: Any, status: int = 200) -> None:
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json; charset=utf-8")
    handler.set_header("Cache-Control", "no-store")
    handler.finish(json.dumps(payload, indent=1, sort_keys=False))


class TablesApi(BaseHandler):
    """GET /api/tables: name, topics, rows, schema, index, limit, lag, ready."""

    def initialize(self, state: ServiceState) -> None:
        self.state = state

    async def prepare(self) -> None:
        # A CORS preflight (an embedding page about to send its token in a header) never
        # carries the token itself: answered without one, it says nothing but "GET with
        # an Authorization header may follow" (service/security/cors.py adds the headers).
        if self.request.method != "OPTIONS":
            await super().prepare()

    def options(self) -> None:
        self.set_status(204)
        self.finish()

    def get(self) -> None:
        # Only the tables this user may read: the others are not even named.
        write_json(self, [t for t in self.state.tables_summary() if self.may_read(t["name"])])


class _Probe(SafeErrors, RequestHandler):
    """Open to every client: orchestrators and scrapers carry no user token."""

    def initialize(self, state: ServiceState) -> None:
        self.state = state


class Healthz(_Probe):
    """200 while the process and every consumer thread are alive."""

    def get(self) -> None:
        problems = self.state.ingestor.problems()
        if problems:
            write_json(self, {"status": "unhealthy", "problems": problems}, 500)
        else:
            write_json(self, {"status": "ok"})


class Readyz(_Probe):
    """503 until every table has applied everything up to the start-up end offsets."""

    def get(self) -> None:
        waiting = {}
        for name, progress in self.state.ingestor.progress.items():
            if not progress.ready:
                behind = progress.behind()
                waiting[name] = {
                    "assigned": progress.assigned,
                    "kafka_connected": progress.connected,
                    "records_behind": sum(behind.values()),
                }
        if waiting:
            write_json(self, {"status": "catching up", "tables": waiting}, 503)
            return
        # Still 200 during a broker outage: the tables keep serving what they hold.
        down = [name for name, p in self.state.ingestor.progress.items() if not p.connected]
        if down:
            write_json(self, {"status": "degraded", "kafka_unreachable": down})
        else:
            write_json(self, {"status": "ready"})


class MetricsEndpoint(_Probe):
    """Prometheus text format. Its labels name every table, restricted ones included:
    with ``server.metrics_token`` set, only a scraper holding that token reads it."""

    def prepare(self) -> None:
        token = self.state.config.server.metrics_token
        if token is None:
            return
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode("utf-8")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8"), expected
        ):
            return
        self.state.metrics.auth_failures.labels("missing" if not given else "invalid").inc()
        self.set_status(401)
        self.set_header("WWW-Authenticate", 'Bearer realm="livetables metrics"')
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish("this endpoint needs the metrics bearer token\n")

    def get(self) -> None:
        self.state.refresh_gauges()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.state.metrics.registry))
