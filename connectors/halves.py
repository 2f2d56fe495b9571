"""Isolating the records a whole-batch step fails on, by splitting the batch in halves.

Whole-batch parsing is the fast path, but one bad record makes the whole call
fail. Splitting the failing range in halves, in order, until each failing
record stands alone finds the bad records in O(bad * log n) calls and keeps
every good one; a clean batch costs exactly one call. The JSON and CSV decoders
use it on a parse, the ingest pipeline on a decoder that raises.
"""

from __future__ import annotations

from collections.abc import Callable


def split_until_isolated(
    start: int,
    stop: int,
    attempt: Callable[[int, int], None],
    isolated: Callable[[int, Exception], None],
    failures: tuple[type[Exception], ...] = (Exception,),
) -> None:
    """Run ``attempt(start, stop)``; where it raises one of ``failures``, split and retry.

    Ranges are attempted in order (a range after another is never attempted
    first), so what ``attempt`` collects keeps the batch's order. A record that
    fails alone is passed to ``isolated(position, exception)``.
    """
    if start >= stop:
        return
    try:
        attempt(start, stop)
    except failures as exc:
        if stop - start == 1:
            isolated(start, exc)
            return
        middle = (start + stop) // 2
        split_until_isolated(start, middle, attempt, isolated, failures)
        split_until_isolated(middle, stop, attempt, isolated, failures)
