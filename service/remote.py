"""A Perspective Python client over livetables' websocket, for scripts, tests and benchmarks.

    remote = await connect("ws://localhost:8080/websocket", token="...")
    quotes = await remote.client.open_table("quotes")
    ...
    remote.close()

perspective-python ships the client but not its transport: this is the
transport, a Tornado websocket whose incoming frames are fed to the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import perspective
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

MAX_MESSAGE_BYTES = 256 * 1024**2


class RemoteClient:
    """A stock ``perspective.AsyncClient`` whose requests go over ``socket``.

    ``pump`` feeds every frame the server sends to the client, until the socket
    closes. With ``record``, ``sent`` keeps every frame the client sent (to
    replay or mutate them in tests).
    """

    def __init__(self, socket: WebSocketClientConnection, record: bool = False) -> None:
        self.socket = socket
        self.sent: list[bytes] = []
        self.record = record
        self.client = perspective.AsyncClient(self._send)
        self.pump = asyncio.ensure_future(self._read())

    async def _send(self, frame: bytes) -> None:
        if self.record:
            self.sent.append(frame)
        await self.socket.write_message(frame, binary=True)

    async def _read(self) -> None:
        while (message := await self.socket.read_message()) is not None:
            if isinstance(message, bytes):
                await self.client.handle_response(message)

    def stop_reading(self) -> None:
        """Stop reading what the server sends (a client that stalls)."""
        self.pump.cancel()

    def close(self) -> None:
        self.pump.cancel()
        self.socket.close()


async def connect(
    url: str,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    max_message_size: int = MAX_MESSAGE_BYTES,
    record: bool = False,
) -> RemoteClient:
    """Open ``url`` (``ws://host:port/websocket``), with a bearer token and headers if given."""
    request_headers = dict(headers or {})
    if token:
        request_headers["Authorization"] = f"Bearer {token}"
    socket = await websocket_connect(
        HTTPRequest(url, headers=request_headers), max_message_size=max_message_size
    )
    return RemoteClient(socket, record)
