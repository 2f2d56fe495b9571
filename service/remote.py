"""A Perspective Python client over livetables' websocket, for scripts, tests and benchmarks.

    client = await connect("ws://localhost:8080/websocket")
    quotes = await client.client.open_table("quotes")
    ...
    client.close()

perspective-python ships the client but not its transport: this is the
transport, a Tornado websocket whose incoming frames are fed to the client.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import perspective
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect


@dataclass
class RemoteClient:
    client: perspective.AsyncClient
    socket: WebSocketClientConnection
    pump: asyncio.Future

    def close(self) -> None:
        self.socket.close()
        self.pump.cancel()


async def connect(
    url: str, token: str | None = None, max_message_size: int = 256 * 1024**2
) -> RemoteClient:
    """Open ``url`` (``ws://host:port/websocket``), with a bearer token if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    socket = await websocket_connect(
        HTTPRequest(url, headers=headers), max_message_size=max_message_size
    )

    async def send(message: bytes) -> None:
        await socket.write_message(message, binary=True)

    client = perspective.AsyncClient(send)

    async def pump() -> None:
        while (message := await socket.read_message()) is not None:
            await client.handle_response(message)

    return RemoteClient(client, socket, asyncio.ensure_future(pump()))
