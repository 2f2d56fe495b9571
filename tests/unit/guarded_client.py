"""A stock Perspective client whose requests pass a session guard, with no socket between.

What the websocket handler does, in-process: each request frame goes through
``guard.handle`` to the server's session, a refusal's answer goes straight back,
and every response passes ``guard.outgoing`` on its way to the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import perspective

from service.security.guard import SessionGuard, Verdict

Scenario = Callable[[perspective.AsyncClient], Awaitable[None]]


class GuardedClient:
    def __init__(self, server: perspective.Server, guard: SessionGuard) -> None:
        self.guard = guard
        self.verdicts: list[Verdict] = []
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.session = server.new_session(self._respond)
        self.client: perspective.AsyncClient | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def _respond(self, message: bytes) -> None:
        out = self.guard.outgoing(message)
        if out is None:
            return
        self.received.append(out)
        assert self.loop is not None and self.client is not None
        if self.loop.is_closed():
            return  # a response to a frame a test sent by hand, after the client's loop
        client = self.client
        self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(client.handle_response(out)))

    async def _send(self, frame: bytes) -> None:
        self.sent.append(frame)
        verdict = self.guard.handle(frame, self.session.handle_request)
        self.verdicts.append(verdict)
        if not verdict.allowed and verdict.response is not None:
            self._respond(verdict.response)

    def run(self, scenario: Scenario, timeout: float = 30) -> None:
        """Run ``scenario(client)`` to its end, on a loop of its own."""

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.client = perspective.AsyncClient(self._send)
            await asyncio.wait_for(scenario(self.client), timeout)

        asyncio.run(main())

    def refusals(self) -> list[str | None]:
        return [v.reason for v in self.verdicts if not v.allowed]
