"""Exponential backoff between restarts of a worker that failed.

A worker that fails once should be back within a second; one that fails
every time it starts must not spin (a tight loop of tracebacks helps no one),
so each consecutive failure doubles the wait up to a ceiling. A worker that
then ran long enough counts as healthy again, and its next failure starts
from the shortest wait.
"""

from __future__ import annotations

FIRST_S = 0.5
LONGEST_S = 30.0
HEALTHY_AFTER_S = 60.0


class Backoff:
    """The wait before each restart, given how long the last run lasted."""

    def __init__(
        self,
        first: float = FIRST_S,
        longest: float = LONGEST_S,
        healthy_after: float = HEALTHY_AFTER_S,
    ) -> None:
        self.first = first
        self.longest = longest
        self.healthy_after = healthy_after
        self._next = first

    def delay(self, ran_for: float) -> float:
        """Seconds to wait before restarting a run that failed after ``ran_for`` seconds."""
        if ran_for >= self.healthy_after:
            self._next = self.first
        delay = self._next
        self._next = min(self._next * 2, self.longest)
        return delay
