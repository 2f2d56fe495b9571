"""librdkafka's own log lines, routed into Python logging with the table's name.

librdkafka writes its log to stderr unless a client is given a ``logger``;
with this one its lines reach the service's log, attributed to the table, and
at most one line per facility every ``INTERVAL_S`` (a broker outage makes
librdkafka repeat itself many times a second; the consumer reports outages
through its error callback anyway).

One event is always logged, as a warning: an offset reset. When the offset a
consumer needs no longer exists (retention deleted it while the consumer was
behind or the broker was unreachable), librdkafka resumes from where
``auto.offset.reset`` says, which livetables derives from the table's start
policy; the records in between are gone, and the log says so.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("connectors.kafka.librdkafka")

INTERVAL_S = 10.0


class LibrdkafkaLog:
    """The ``logger`` object of a librdkafka client (librdkafka calls ``log``)."""

    def __init__(self, table: str, reset: str, client: str | None = None) -> None:
        self.table = table
        self.reset = reset
        # Who the line is about: a table's consumer, or a client shared by every table.
        self.client = client or f"table {table}"
        self._logged_at: dict[str, float] = {}

    def log(self, level: int, fmt: str, *args: object) -> None:
        try:
            facility = str(args[0]) if args else ""
            text = str(args[-1]) if args else fmt
        except Exception:  # never let a log line break the consumer
            return
        if "offset reset" in text:
            log.warning(
                "table %s: offset out of range, resuming at the %s available offset "
                "(start policy); records no longer on the broker were skipped: %s",
                self.table,
                self.reset,
                text.split("]: ", 1)[-1],
            )
            return
        now = time.monotonic()
        if now - self._logged_at.get(facility, -INTERVAL_S) < INTERVAL_S:
            return
        self._logged_at[facility] = now
        log.log(min(level, logging.WARNING), "%s: librdkafka %s: %s", self.client, facility, text)
