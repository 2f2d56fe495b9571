"""Assembles and runs the service: tables, ingest, and the HTTP server.

``Service`` is used the same way by ``livetables serve``, ``livetables demo``
and the tests: ``await start()`` binds the port and starts consuming,
``await stop()`` stops consumers, closes websockets and releases the port.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

from service import __version__
from service.config import LivetablesConfig, resolve_config
from service.gcpause import settle_after_start
from service.ingest import Ingestor
from service.metrics import Metrics
from service.replication import Replicator
from service.state import ServiceState
from service.tables import TableHost
from service.web.app import make_app
from service.web.server import GuardedHTTPServer, http_server

log = logging.getLogger(__name__)

# Connections the kernel completes before the service accepts them. Tornado's 128 drops
# the SYNs of a burst (each dropped client retries after a second); the kernel caps it
# at net.core.somaxconn anyway.
LISTEN_BACKLOG = 1024


class Service:
    def __init__(self, config: LivetablesConfig) -> None:
        # Resolved once: `livetables serve` hands over a resolved configuration already.
        config, _ = resolve_config(config)
        self.config = config
        self.metrics = Metrics(__version__)
        self.host = TableHost(config)
        self.replicator = Replicator(self.host)
        self.ingestor = Ingestor(config, self.host, self.metrics, self.replicator)
        self.state = ServiceState(config, self.host, self.ingestor, self.metrics, self.replicator)
        self.sessions: set[Any] = set()
        self._http: GuardedHTTPServer | None = None
        self.port: int | None = None

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        host = host if host is not None else self.config.server.host
        port = port if port is not None else self.config.server.port
        app = make_app(self.state, self.sessions)
        self._http = http_server(app, self.config.server, self.metrics)
        sockets = _bind(host, port)
        self._http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self.replicator.start()
        self.ingestor.start()
        log.info(
            "livetables %s serving %d table(s) on http://%s:%d/",
            __version__,
            len(self.config.tables),
            _display_host(host),
            self.port,
        )

    async def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
        for session in list(self.sessions):
            session.shutdown()
        self.ingestor.stop()
        self.replicator.stop()
        if self._http is not None:
            await asyncio.wait_for(self._http.close_all_connections(), timeout=5)
            self._http = None
        self.host.close()
        log.info("livetables stopped")

    @property
    def url(self) -> str:
        return f"http://{_display_host(self.config.server.host)}:{self.port}/"


def _bind(host: str, port: int) -> list[socket.socket]:
    from tornado.netutil import bind_sockets

    return bind_sockets(
        port,
        address=None if host in ("", "0.0.0.0") else host,
        family=socket.AF_INET if host in ("", "0.0.0.0") else socket.AF_UNSPEC,
        backlog=LISTEN_BACKLOG,
    )


def _display_host(host: str) -> str:
    return "localhost" if host in ("", "0.0.0.0", "::") else host


async def serve_until_signalled(service: Service, host: str | None, port: int | None) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await service.start(host, port)
    settle_after_start()
    print(f"livetables: serving {service.url}", flush=True)
    await stop.wait()
    log.info("signal received: stopping")
    await service.stop()
