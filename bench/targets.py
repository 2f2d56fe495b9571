"""The targets the benchmark is held to, each printed with what this run measured.

Every row is printed whether or not its scenario ran (``--only``, a peer that could not
be built): a missing figure says "not run" rather than disappearing from the table.
Targets live here, never in tests: timings on shared machines are noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One row of the targets table: ``measured`` must be ``>=`` or ``<=`` ``goal``."""

    key: str
    row: str
    goal: float
    at_least: bool
    unit: str = ""


TARGETS = (
    Target("ceiling", "append ingest ÷ update-only rate (same batches, same run)", 0.90, True),
    Target("csp", "append ingest ÷ csp (same run, same topic)", 1.0, True, "x"),
    Target("naive", "append ingest ÷ naive per-record update()", 200, True, "x"),
    Target("indexed", "indexed table, 100k keys", 650_000, True, "rec/s"),
    Target("limit", "rolling window, limit 100k", 500_000, True, "rec/s"),
    Target("replay", "replay 10M records, start to /readyz 200", 12, False, "s"),
    Target("p99_50", "p99 Kafka→client, 10k rec/s, 50 replicated clients", 50, False, "ms"),
    Target("p99_500", "p99 Kafka→client, 10k rec/s, 500 replicated clients", 100, False, "ms"),
    Target("p99_ratio", "p99 with 200 clients ÷ p99 with 1 client, same run", 2, False, "x"),
    Target("p99_join", "p99 with 500 clients while 50 new clients connect", 150, False, "ms"),
)
BY_KEY = {t.key: t for t in TARGETS}


class Scorecard:
    """What the run measured against each target."""

    def __init__(self) -> None:
        self.measured: dict[str, float] = {}
        self.notes: dict[str, str] = {}

    def record(self, key: str, value: float, note: str = "") -> None:
        if key not in BY_KEY:
            raise KeyError(f"no target {key!r}")
        self.measured[key] = value
        if note:
            self.notes[key] = note

    def rows(self) -> list[dict]:
        out = []
        for target in TARGETS:
            value = self.measured.get(target.key)
            sign = "≥" if target.at_least else "≤"
            row: dict = {
                "scenario": target.row,
                "measured": "not run" if value is None else value,
                "target": f"{sign} {target.goal:,g} {target.unit}".strip(),
                "met": _met(target, value),
            }
            if target.key in self.notes:
                row["note"] = self.notes[target.key]
            out.append(row)
        return out


def _met(target: Target, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    ok = value >= target.goal if target.at_least else value <= target.goal
    return "yes" if ok else "no"
