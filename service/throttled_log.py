"""Log lines that an attack or an outage could repeat thousands of times a second.

:class:`ThrottledLog` logs a message at most once per interval per key, and says
how often it happened meanwhile, so the log stays readable and cheap while the
count of what happened is kept (in the metrics, by the caller).
"""

from __future__ import annotations

import logging
import time
from collections import Counter


class ThrottledLog:
    """At most one line per key every ``interval`` seconds, with how many were held back."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._since: Counter[str] = Counter()

    def allowed(self, key: str) -> bool:
        """True at most once per interval per key (for a caller that logs several lines)."""
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            return False
        self._last[key] = now
        return True

    def log(self, level: int, key: str, message: str, *args: object) -> None:
        self._since[key] += 1
        if self.allowed(key):
            count = self._since.pop(key)
            suffix = f" ({count} times since the last such message)" if count > 1 else ""
            self.logger.log(level, message + suffix, *args)

    def warning(self, key: str, message: str, *args: object) -> None:
        self.log(logging.WARNING, key, message, *args)

    def info(self, key: str, message: str, *args: object) -> None:
        self.log(logging.INFO, key, message, *args)
