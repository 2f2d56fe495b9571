"""The vocabulary of a source: partitions, the start policy, and how a source reports.

A source hands its owner whole batches and news about partitions through
:class:`SourceCallbacks`; the owner decides what a batch becomes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from connectors.base import RawBatch

Partition = tuple[str, int]
"""(topic, partition)"""

_LOOKBACK = re.compile(r"^-(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def lookback(text: str) -> timedelta | None:
    """The time window of a ``-15m`` style start policy, or None for anything else."""
    match = _LOOKBACK.match(text)
    if match is None:
        return None
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass(frozen=True)
class StartPolicy:
    """Where to start reading: ``earliest``, ``latest``, or a window back from now (``-15m``).

    Parsed once, when constructed; a text that is none of these raises ValueError.
    """

    text: str = "earliest"
    window: timedelta | None = field(init=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.text in ("earliest", "latest"):
            return
        window = lookback(self.text)
        if window is None:
            raise ValueError(
                "start must be earliest, latest or a lookback like -15m / -2h / -1d, "
                f"not {self.text!r}"
            )
        object.__setattr__(self, "window", window)

    @property
    def kind(self) -> str:
        """``earliest`` | ``latest`` | ``lookback``"""
        return self.text if self.window is None else "lookback"

    @property
    def reset(self) -> str:
        """auto.offset.reset when retention deleted the offsets we wanted."""
        return "latest" if self.kind == "latest" else "earliest"

    def __str__(self) -> str:
        return self.text


@dataclass
class SourceCallbacks:
    """How a source reports to its owner; every callback runs on the source's thread.

    ``on_batch`` hands a batch over with the next offset of every partition it
    read to: once it returns, the batch is the owner's and is never read again,
    even after a restart; if it raises, the consumer restarts and reads the batch
    again. An exception from any other callback is logged and ignored.
    ``on_restart`` is told of each failure after which the consumer restarts.
    """

    on_batch: Callable[[RawBatch, dict[Partition, int]], None]
    on_assigned: Callable[[dict[Partition, int], dict[Partition, int]], None]
    on_watermarks: Callable[[dict[Partition, int]], None]
    on_connected: Callable[[bool], None]
    on_restart: Callable[[BaseException], None] | None = None
