"""The ``snapshots:`` section: where table snapshots are kept and how often they are taken.

Absent, a restart replays every table from Kafka. Present, each table's rows and
the offsets they stand for are written to ``dir`` every ``interval`` (and at a
clean shutdown), and a restart loads them and reads only the tail of the log.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator

from service.config.base import Strict

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MIN_INTERVAL = timedelta(seconds=1)


def parse_duration(value: Any) -> timedelta:
    """``30s``, ``5m``, ``1h``, ``500ms`` (or a number of seconds) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    match = _DURATION.match(str(value).strip())
    if match is None:
        raise ValueError(f"expected a duration like 30s, 5m or 1h, not {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class SnapshotsConfig(Strict):
    dir: str = Field(min_length=1, description="directory of the snapshots (a volume)")
    interval: timedelta = Field(
        timedelta(seconds=30), description="time between snapshots of a table that changed"
    )

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        interval = parse_duration(value)
        if interval < MIN_INTERVAL:
            raise ValueError(f"must be at least 1s, not {value!r}")
        return interval

    @property
    def interval_seconds(self) -> float:
        return self.interval.total_seconds()
