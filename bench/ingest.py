"""Scenarios 1-3: ingest of pre-produced records, with the CPU of every record accounted.

Each livetables run is measured from its first consumed record until it is caught up
(scenario 3: from process start to ``/readyz``), and the same span is accounted: CPU
per record of each stage, each thread group, the whole process and the broker
(``bench/accounting.py``). The append and the two table kinds of scenario 2 are also
set beside the update-only ceiling (``bench/ceiling.py``): the same records, decoded
once, applied by Perspective alone in batches the size the service applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench import baselines, ceiling
from bench.accounting import Accounting, Snapshot, per_record, snapshot
from bench.peers import CSP_PYTHON, run_csp_ingest
from bench.records import SCHEMA, produce
from bench.service import ServedLivetables
from service.localkafka import LocalKafka

if TYPE_CHECKING:
    from bench.__main__ import Results, Sizes

PARTITIONS = 4
NewTopic = Callable[[LocalKafka, str], str]


def rate(outcome: dict) -> float:
    """Records/s of an outcome: the rate it measured itself (a peer), else records / seconds."""
    if "rate" in outcome:
        return outcome["rate"]
    return outcome["records"] / outcome["seconds"] if outcome["seconds"] else float("nan")


def _ours(results: Results, name: str, records: int, ours: dict) -> None:
    """The row of livetables' own run of a scenario."""
    results.add(f"{name}: livetables", records=records, seconds=ours["seconds"], rate=ours["rate"])


def _compared(results: Results, label: str, ours: dict, other: dict) -> float:
    """A side-by-side row (a baseline or a peer) with livetables' rate over its own; the ratio."""
    ratio = ours["rate"] / rate(other)
    results.add(
        label, records=other["records"], seconds=other["seconds"], rate=rate(other), ratio=ratio
    )
    return ratio


def mean_batch_rows(metrics_text: str, table: str) -> int:
    """Records per applied batch over the run (``livetables_batch_rows``), 10k if unknown."""
    found = {}
    for part in ("sum", "count"):
        match = re.search(
            rf'^livetables_batch_rows_{part}\{{table="{re.escape(table)}"\}} (\S+)$',
            metrics_text,
            re.MULTILINE,
        )
        found[part] = float(match.group(1)) if match else 0.0
    return round(found["sum"] / found["count"]) if found["count"] else 10_000


def run_accounted(
    kafka: LocalKafka, topic: str, records: int, **table: object
) -> tuple[dict, Accounting, int]:
    """One livetables run, its rate, the CPU accounting of the span and its batch size."""
    tables = {"t": {"topic": topic, "format": "json", "schema": SCHEMA, **table}}
    with ServedLivetables(kafka.bootstrap, tables) as served:
        assert served.process is not None
        pid, first = served.process.pid, []

        def take() -> Snapshot:
            return snapshot(pid, served.metrics_text(), "t", kafka.pid)

        outcome = served.ingest_rate(
            "t", records, timeout=600, on_first=lambda: first.append(take())
        )
        text = served.metrics_text()
        last = snapshot(pid, text, "t", kafka.pid)
    counted = int(outcome.get("counted", records))
    before = first[0] if first else last
    return (
        outcome,
        per_record(before, last, counted, outcome["seconds"]),
        mean_batch_rows(text, "t"),
    )


def run_csp(kafka: LocalKafka, topic: str, records: int, build: bool) -> dict | str:
    """csp's Kafka adapter feeding a Perspective table, in its own virtualenv."""
    if not build and not CSP_PYTHON.exists():
        return "skipped: csp environment not built (make bench builds it)"
    outcome = run_csp_ingest(kafka.bootstrap, topic, records, timeout=600)
    if "skipped" in outcome:
        return f"skipped: {outcome['skipped']}"
    return {
        "records": outcome["records"],
        "seconds": outcome["seconds"],
        "rate": outcome["records_per_s"],
    }


def _accounted(
    results: Results, name: str, outcome: dict, cpu: Accounting, batch_rows: int
) -> None:
    results.add(f"cpu {name}", rate=outcome["rate"], batch=batch_rows, **cpu.columns())


def _with_ceiling(
    results: Results,
    name: str,
    outcome: dict,
    batch_rows: int,
    key_space: int | None = None,
    **table: object,
) -> float:
    """The update-only rate on the same records and batch size; ours as a fraction of it."""
    # Tiny (smoke) inputs may be consumed whole before the first poll: then no span.
    records = int(outcome.get("counted") or outcome["records"])
    top = ceiling.update_only(records, batch_rows, key_space, **table)
    share = outcome["rate"] / top["rate"] if outcome["rate"] and top["rate"] else float("nan")
    results.add(
        f"{name}: update-only ceiling (same batches, no Kafka)",
        records=records,
        seconds=top["seconds"],
        rate=top["rate"],
        batch=batch_rows,
        of_ceiling=share,
    )
    return share


def append(kafka: LocalKafka, sizes: Sizes, results: Results, new_topic: NewTopic) -> None:
    results.progress(f"scenario 1: append table; producing {sizes.append:,} records")
    topic = new_topic(kafka, "append")
    produce(kafka.bootstrap, topic, sizes.append, PARTITIONS)
    results.progress("scenario 1: livetables")
    ours, cpu, batch_rows = run_accounted(kafka, topic, sizes.append)
    name = "1 append"
    _ours(results, name, sizes.append, ours)
    _accounted(results, name, ours, cpu, batch_rows)
    results.progress("scenario 1: update-only ceiling")
    results.score.record("ceiling", _with_ceiling(results, name, ours, batch_rows))
    results.progress(f"scenario 1: naive baseline on {sizes.naive:,} records")
    naive = baselines.naive(kafka.bootstrap, topic, PARTITIONS, sizes.naive)
    results.score.record(
        "naive", _compared(results, f"{name}: (a) naive, one update per record", ours, naive)
    )
    results.progress(f"scenario 1: batched baseline on {sizes.batched:,} records")
    batched = baselines.batched(kafka.bootstrap, topic, PARTITIONS, sizes.batched)
    _compared(results, f"{name}: (b) batched json.loads + update(list)", ours, batched)
    results.progress("scenario 1: csp peer")
    peer = run_csp(kafka, topic, sizes.batched, build=not sizes.smoke)
    if isinstance(peer, str):
        results.add(f"{name}: (c) csp Kafka adapter + Perspective", status=peer)
        return
    results.score.record(
        "csp", _compared(results, f"{name}: (c) csp Kafka adapter + Perspective", ours, peer)
    )


def indexed_and_limit(
    kafka: LocalKafka, sizes: Sizes, results: Results, new_topic: NewTopic
) -> None:
    results.progress(f"scenario 2: indexed, {sizes.indexed:,} records over {sizes.keys:,} keys")
    topic = new_topic(kafka, "indexed")
    produce(kafka.bootstrap, topic, sizes.indexed, PARTITIONS, key_space=sizes.keys)
    ours, cpu, batch_rows = run_accounted(kafka, topic, sizes.indexed, index="i")
    name = "2 indexed"
    _ours(results, name, sizes.indexed, ours)
    results.score.record("indexed", ours["rate"])
    _accounted(results, name, ours, cpu, batch_rows)
    _with_ceiling(results, name, ours, batch_rows, sizes.keys, index="i")
    batched = baselines.batched(
        kafka.bootstrap, topic, PARTITIONS, min(sizes.batched, sizes.indexed), index="i"
    )
    _compared(results, f"{name}: (b) batched baseline", ours, batched)

    results.progress(f"scenario 2: limit, {sizes.limit_records:,} records, limit {sizes.limit:,}")
    topic = new_topic(kafka, "limit")
    produce(kafka.bootstrap, topic, sizes.limit_records, PARTITIONS)
    ours, cpu, batch_rows = run_accounted(kafka, topic, sizes.limit_records, limit=sizes.limit)
    name = "2 limit"
    _ours(results, name, sizes.limit_records, ours)
    results.score.record("limit", ours["rate"])
    _accounted(results, name, ours, cpu, batch_rows)
    _with_ceiling(results, name, ours, batch_rows, limit=sizes.limit)
    batched = baselines.batched(
        kafka.bootstrap,
        topic,
        PARTITIONS,
        min(sizes.batched, sizes.limit_records),
        limit=sizes.limit,
    )
    _compared(results, f"{name}: (b) batched baseline", ours, batched)


def replay(
    kafka: LocalKafka, sizes: Sizes, results: Results, new_topic: NewTopic
) -> tuple[str, int]:
    """Scenario 3, accounted from process start; returns the topic and the service's RSS."""
    results.progress(f"scenario 3: replay; producing {sizes.replay:,} records")
    topic = new_topic(kafka, "replay")
    produce(kafka.bootstrap, topic, sizes.replay, PARTITIONS)
    results.progress("scenario 3: start livetables, wait for /readyz")
    tables = {"t": {"topic": topic, "schema": SCHEMA}}
    with ServedLivetables(kafka.bootstrap, tables) as served:
        assert served.process is not None
        start = Snapshot.at_start(kafka.pid)
        seconds = served.wait_ready(900)
        text = served.metrics_text()
        last = snapshot(served.process.pid, text, "t", kafka.pid)
        rss = served.rss_bytes()
    name = "3 replay"
    results.add(
        f"{name}: process start to /readyz 200",
        records=sizes.replay,
        seconds=seconds,
        rate=sizes.replay / seconds,
        cpu_seconds=last.process,
    )
    results.score.record("replay", seconds, "" if sizes.replay == 10_000_000 else "smaller input")
    cpu = per_record(start, last, sizes.replay, seconds)
    _accounted(results, name, {"rate": sizes.replay / seconds}, cpu, mean_batch_rows(text, "t"))
    return topic, rss
