"""Where each record's CPU goes: per stage, per thread, and the broker's, beside the rate.

Three sources, read before and after a measured span and subtracted:

* the service's own stage clocks (``livetables_stage_cpu_seconds_total{table,stage}``:
  consume, extract, decode, apply, replicate, bookkeeping), each measured on the thread
  that runs the stage;
* every thread of the service process, from ``/proc/<pid>/task/*/stat``, grouped by the
  name the thread carries (``kafka-<table>``, ``applier``, ``replicator``, the IOLoop as
  the main thread, librdkafka's ``rdk:*``, ``engine`` workers). A helper thread takes the
  name of the thread that started it (perspective's update helpers are ``applier``,
  pyarrow's are the consumer's), so a group is a role, helpers included;
* the broker's process (it shares the two cores).

A stage's figure is CPU on its own thread; the thread figures include the helpers each
stage wakes. Both are printed, per record, with the process total, so the sum is seen.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAGES = ("consume", "extract", "decode", "apply", "replicate", "bookkeeping")
THREAD_GROUPS = ("consumer", "librdkafka", "applier", "replicator", "ioloop", "engine", "other")
SHORT = {
    "replicate": "repl",
    "bookkeeping": "book",
    "consumer": "cons",
    "librdkafka": "rdk",
    "applier": "appl",
    "replicator": "repl",
    "ioloop": "loop",
    "engine": "eng",
}


def _cpu_of(stat_path: Path) -> float:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_group(name: str, main: bool) -> str:
    if main:
        return "ioloop"
    if name.startswith("kafka-"):
        return "consumer"
    if name.startswith("rdk:"):
        return "librdkafka"
    if name.startswith("applier"):
        return "applier"
    if name.startswith("replicator"):
        return "replicator"
    if name.startswith("engine"):
        return "engine"
    return "other"


def threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread group of process ``pid`` (threads that ended are not counted)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            seconds = _cpu_of(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
        group = thread_group(name, task.name == str(pid))
        out[group] = out.get(group, 0.0) + seconds
    return out


def process_cpu(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        return _cpu_of(Path(f"/proc/{pid}/stat"))
    except OSError:
        return float("nan")


_STAGE_LINE = re.compile(r"^livetables_stage_cpu_seconds_total\{([^}]*)\} (\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def stages_cpu(metrics_text: str, table: str) -> dict[str, float]:
    out = dict.fromkeys(STAGES, 0.0)
    for labels, value in _STAGE_LINE.findall(metrics_text):
        found = dict(_LABEL.findall(labels))
        if found.get("table") == table and found.get("stage") in out:
            out[found["stage"]] = float(value)
    return out


@dataclass
class Snapshot:
    stages: dict[str, float]
    threads: dict[str, float]
    process: float
    broker: float

    @classmethod
    def at_start(cls, broker_pid: int | None) -> Snapshot:
        """A process about to start: nothing spent yet, the broker as it is now."""
        return cls(dict.fromkeys(STAGES, 0.0), {}, 0.0, process_cpu(broker_pid))


@dataclass
class Accounting:
    """CPU per record over a span: stages, thread groups, the process, the broker."""

    records: int
    seconds: float
    stages_us: dict[str, float] = field(default_factory=dict)
    threads_us: dict[str, float] = field(default_factory=dict)
    process_us: float = 0.0
    broker_us: float = float("nan")

    @property
    def cores(self) -> float:
        """Cores the service and the broker kept busy on average."""
        busy = self.process_us + (0.0 if self.broker_us != self.broker_us else self.broker_us)
        return busy * self.records / 1e6 / self.seconds if self.seconds else float("nan")

    def columns(self) -> dict[str, float]:
        """One flat row for the report: microseconds of CPU per record, short column names.

        Stages by name (``repl``: replicate, ``book``: bookkeeping), thread groups as
        ``t:<group>``, then the process, the broker and the cores both kept busy.
        """
        row: dict[str, float] = {SHORT.get(s, s): self.stages_us.get(s, 0.0) for s in STAGES}
        row.update({f"t:{SHORT.get(g, g)}": self.threads_us.get(g, 0.0) for g in THREAD_GROUPS})
        row["process"] = self.process_us
        row["broker"] = self.broker_us
        row["cores"] = self.cores
        return row


def snapshot(pid: int, metrics_text: str, table: str, broker_pid: int | None) -> Snapshot:
    return Snapshot(
        stages=stages_cpu(metrics_text, table),
        threads=threads_cpu(pid),
        process=process_cpu(pid),
        broker=process_cpu(broker_pid),
    )


def per_record(before: Snapshot, after: Snapshot, records: int, seconds: float) -> Accounting:
    scale = 1e6 / records if records else float("nan")
    return Accounting(
        records=records,
        seconds=seconds,
        stages_us={s: (after.stages[s] - before.stages[s]) * scale for s in STAGES},
        threads_us={
            g: (after.threads.get(g, 0.0) - before.threads.get(g, 0.0)) * scale
            for g in THREAD_GROUPS
        },
        process_us=(after.process - before.process) * scale,
        broker_us=(after.broker - before.broker) * scale,
    )
