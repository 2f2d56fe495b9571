"""CPU time per stage of a record's path, measured on the thread that runs the stage.

The benchmark (and ``livetables_stage_cpu_seconds_total``) accounts for every
microsecond a record costs: how much of it is consuming, extracting, decoding,
applying, replicating, or bookkeeping around them. Each thread on the path keeps
a :class:`StageClock` of its own and marks the end of each stage with
:meth:`StageClock.lap`; a lap is one read of the thread's CPU clock (well under
a microsecond) per stage and batch, nothing per record. Only the owning thread
writes a clock, so no lock is taken; readers sum the totals of every clock.
"""

from __future__ import annotations

import threading
import time

_local = threading.local()
_clocks: list[StageClock] = []
_clocks_lock = threading.Lock()


class StageClock:
    """One thread's CPU seconds per (table, stage)."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], float] = {}
        self._mark = time.thread_time()

    def start(self) -> None:
        """From now on: CPU time before this is nobody's."""
        self._mark = time.thread_time()

    def lap(self, table: str, stage: str) -> None:
        """The thread's CPU time since the last mark goes to ``stage`` of ``table``."""
        now = time.thread_time()
        key = (table, stage)
        self.totals[key] = self.totals.get(key, 0.0) + (now - self._mark)
        self._mark = now


def thread_clock() -> StageClock:
    """The calling thread's clock (made on first use)."""
    clock = getattr(_local, "clock", None)
    if clock is None:
        clock = _local.clock = StageClock()
        with _clocks_lock:
            _clocks.append(clock)
    return clock


def totals() -> dict[tuple[str, str], float]:
    """CPU seconds per (table, stage), summed over every thread's clock."""
    with _clocks_lock:
        clocks = list(_clocks)
    out: dict[tuple[str, str], float] = {}
    for clock in clocks:
        for key, seconds in list(clock.totals.items()):
            out[key] = out.get(key, 0.0) + seconds
    return out
