"""Durations in the configuration: ``250ms``, ``30s``, ``15m``, ``2h``, ``1d``.

A duration is written the way the ``start`` lookback is (without its minus
sign), so one file reads the same everywhere: ``start: -15m`` and
``retention: 15m`` mean the same window.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, PlainValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> timedelta:
    """``15m`` -> 15 minutes; ValueError naming the accepted forms for anything else."""
    if isinstance(value, timedelta):
        parsed = value
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"expected a duration like 250ms, 30s, 15m, 2h or 1d, not {value!r}")
        parsed = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if parsed <= timedelta(0):
        raise ValueError(f"a duration must be longer than zero, not {value!r}")
    return parsed


def format_duration(value: timedelta) -> str:
    """The shortest text :func:`parse_duration` reads back as ``value``."""
    ms = round(value.total_seconds() * 1000)
    for unit in ("d", "h", "m", "s"):
        size = round(_UNIT_SECONDS[unit] * 1000)
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    Field(description="a duration: 250ms, 30s, 15m, 2h, 1d"),
]
