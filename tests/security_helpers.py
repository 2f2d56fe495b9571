"""Helpers for the security and fault tests: a service in a process of its own, remote clients.

A service that a test tries to crash (fuzzing) or whose memory it measures
(a stalled client) runs as ``livetables serve`` in a subprocess: a crash is then
a failed assertion, not a dead test runner, and its RSS is its own.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import perspective
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from service.localkafka.broker import free_port
from tests.helpers import http_get, wait_until


class ServiceProcess:
    """``livetables serve`` on a loopback port, in its own process."""

    def __init__(self, config: dict, directory: Path) -> None:
        self.port = free_port()
        config = {"server": {"host": "127.0.0.1", "port": self.port}, **config}
        config["server"] = {**config["server"], "host": "127.0.0.1", "port": self.port}
        self.path = directory / "livetables.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.log_path = directory / "livetables.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--config", str(self.path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.get("/healthz")[0] == 200 or not self.alive(), what="listening")
        assert self.alive(), self.output()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process is not None:
            self._log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/websocket"

    def get(self, path: str) -> tuple[int, Any]:
        return http_get(self.url + path)

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def rss_bytes(self) -> int:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def metric(self, name: str, **labels: str) -> float:
        status, text = self.get("/metrics")
        assert status == 200, (status, text)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
        return 0.0


async def connect(
    url: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> WebSocketClientConnection:
    return await websocket_connect(HTTPRequest(url, headers=headers or {}), **kwargs)


class RemoteClient:
    """A stock Perspective client over a websocket; ``frames`` records what it sent."""

    def __init__(self, socket: WebSocketClientConnection, record: bool = False) -> None:
        self.socket = socket
        self.frames: list[bytes] = []
        self.record = record
        self.client = perspective.AsyncClient(self._send)
        self._pump = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, headers: dict[str, str] | None = None, record: bool = False):
        return cls(await connect(url, headers), record)

    async def _send(self, frame: bytes) -> None:
        if self.record:
            self.frames.append(frame)
        await self.socket.write_message(frame, binary=True)

    async def _read(self) -> None:
        while (message := await self.socket.read_message()) is not None:
            if isinstance(message, bytes):
                await self.client.handle_response(message)

    def stop_reading(self) -> None:
        self._pump.cancel()

    async def close(self) -> None:
        self._pump.cancel()
        self.socket.close()


async def poll(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """``wait_until`` for coroutines: poll without blocking the event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
