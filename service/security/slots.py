"""Slots counted in total and per client address, against two caps.

The HTTP server counts open connections this way (service/web/server.py), the
websocket handlers open sessions (service/web/base.py). A slot is taken when a
connection or session is admitted and given back when it ends; past either cap
the next one is refused, and the refusal's reason names the cap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class AddressSlots:
    """Slots in use, in total and per address; ``REASONS`` name the two caps in refusals."""

    REASONS = ("total", "per_address")

    def __init__(
        self, total: int, per_address: int, exempt: Callable[[str], bool] | None = None
    ) -> None:
        self.max_total = total
        self.max_per_address = per_address
        self.exempt = exempt  # addresses the per-address cap does not apply to
        self.total = 0
        self.by_address: Counter[str] = Counter()

    def refusal(self, address: str) -> str | None:
        """Why one more slot for ``address`` would be past a cap, or None."""
        if self.total >= self.max_total:
            return self.REASONS[0]
        if self.by_address[address] >= self.max_per_address and not (
            self.exempt is not None and self.exempt(address)
        ):
            return self.REASONS[1]
        return None

    def take(self, address: str) -> None:
        self.total += 1
        self.by_address[address] += 1

    def give_back(self, address: str) -> None:
        self.total -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


class SessionSlots(AddressSlots):
    """Open websocket sessions (``server.max_websocket_sessions[_per_address]``)."""

    REASONS = ("sessions", "sessions_per_address")
