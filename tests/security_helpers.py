"""Helpers for the security and fault tests: a service in a process of its own, raw sockets.

A service that a test tries to crash (fuzzing) or whose memory it measures
(a stalled client) runs as ``livetables serve`` in a subprocess: a crash is then
a failed assertion, not a dead test runner, and its RSS is its own.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from service.localkafka.broker import free_port
from tests.helpers import http_get, wait_until


class ServiceProcess:
    """``livetables serve`` on a loopback port, in its own process."""

    def __init__(self, config: dict, directory: Path, open_files: int | None = None) -> None:
        self.open_files = open_files  # RLIMIT_NOFILE (soft and hard) of the service, if set
        self.port = free_port()
        config = {"server": {"host": "127.0.0.1", "port": self.port}, **config}
        config["server"] = {**config["server"], "host": "127.0.0.1", "port": self.port}
        self.path = directory / "livetables.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.log_path = directory / "livetables.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        limit = self.open_files

        def limit_open_files() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--config", str(self.path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_open_files if limit is not None else None,
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

    def cpu_seconds(self) -> float:
        """User plus system CPU time the service has used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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


async def open_socket(
    url: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> WebSocketClientConnection:
    """A websocket with no Perspective client on it: for handshakes and frames by hand.
    (A Perspective client over a websocket is service.remote.connect.)"""
    return await websocket_connect(HTTPRequest(url, headers=headers or {}), **kwargs)


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


def open_from(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the service from a loopback address of the test's choosing
    (every 127.x.y.z is this host: several client addresses without several hosts)."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )
    return sock


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True if the other end closed (or reset) the connection within ``timeout``;
    False if it is still open. Any bytes waiting are read and dropped."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def raw_http(
    port: int,
    request: bytes,
    source: str = "127.0.0.1",
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are, read one response: status, headers (lower-case names), body."""
    with open_from(port, source, timeout) as sock:
        sock.sendall(request)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a complete response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def get_request(path: str, host: str = "127.0.0.1", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode()


def wait_all_closed(socks: list[socket.socket], timeout: float) -> int:
    """Wait until the service has closed every socket; return how many are still open."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    still_open = len(socks)
    deadline = time.monotonic() + timeout
    while still_open and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                still_open -= 1
    selector.close()
    return still_open


def raw_websocket(
    port: int, path: str = "/websocket", receive_buffer: int | None = None
) -> socket.socket:
    """A websocket handshake by hand, for frames no client library would send.

    ``receive_buffer``: a small SO_RCVBUF for a client that will stop reading.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "connection closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock
