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
from service.web.errors import SafeErrors


class _Base(SafeErrors, RequestHandler):
    def initialize(self, state: ServiceState) -> None:
        self.state = state

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(payload, indent=1, sort_keys=False))


class TablesApi(_Base):
    """GET /api/tables: name, topics, rows, schema, index, limit, lag, ready."""

    def get(self) -> None:
        self.write_json(self.state.tables_summary())


class Healthz(_Base):
    """200 while the process and every consumer thread are alive."""

    def get(self) -> None:
        problems = self.state.ingestor.problems()
        if problems:
            self.write_json({"status": "unhealthy", "problems": problems}, 500)
        else:
            self.write_json({"status": "ok"})


class Readyz(_Base):
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
            self.write_json({"status": "catching up", "tables": waiting}, 503)
            return
        # Still 200 during a broker outage: the tables keep serving what they hold.
        down = [name for name, p in self.state.ingestor.progress.items() if not p.connected]
        if down:
            self.write_json({"status": "degraded", "kafka_unreachable": down})
        else:
            self.write_json({"status": "ready"})


class MetricsEndpoint(_Base):
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
