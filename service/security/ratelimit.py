"""A token bucket: how many requests per second one websocket session may send.

Each request takes a token; tokens come back at ``rate`` per second up to
``burst``, so a viewer loading (a few dozen requests at once) or scrolling
never notices, while a client looping ``to_arrow`` is held to ``rate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Not thread-safe: one bucket per session, used from the IOLoop only."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def take(self) -> bool:
        """Spend a token if there is one."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
