"""The benchmark suite: ``python -m bench`` (``make bench``), ``--smoke`` for tiny inputs.

Every comparison runs in the same process run, against the same real Kafka
broker (started like the tests start it), on the same topic, and is reported
as absolute figures and as a ratio. Results go to stdout and to
``bench/RESULTS.md`` (``bench/out/RESULTS-smoke.md`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from bench import derived as bench_derived
from bench import formats as bench_formats
from bench import ingest as bench_ingest
from bench import snapshots as bench_snapshots
from bench.audience import latency
from bench.records import SCHEMA, produce, raw_batch, value
from bench.service import ServedLivetables
from bench.targets import Scorecard
from connectors.decoding import BatchDecoder
from service.config import TableConfig, decode_spec
from service.localkafka import LocalKafka

HERE = Path(__file__).parent
PARTITIONS = bench_ingest.PARTITIONS


@dataclass
class Sizes:
    append: int
    naive: int
    batched: int
    indexed: int
    keys: int
    limit_records: int
    limit: int
    replay: int
    latency_seconds: float
    audiences: tuple[int, ...]  # replicated clients; 1 and 200 give the tail's growth
    join_storm: tuple[int, int]  # (clients watching, clients joining at once)
    own_view_audiences: tuple[int, ...]
    derived_audiences: tuple[int, ...]
    live_rate: int
    decode_records: int
    snapshot_interval: int
    derived_source: int
    derived_updates: int
    retention_window_s: int
    retention_seconds: int
    smoke: bool = False


FULL = Sizes(
    append=3_000_000,
    naive=30_000,
    batched=1_000_000,
    indexed=2_000_000,
    keys=100_000,
    limit_records=2_000_000,
    limit=100_000,
    replay=10_000_000,
    latency_seconds=20,
    audiences=(1, 50, 200, 500),
    join_storm=(500, 50),
    own_view_audiences=(50,),
    derived_audiences=(50, 500),
    live_rate=10_000,
    decode_records=100_000,
    snapshot_interval=5,
    derived_source=1_000_000,
    derived_updates=20,
    retention_window_s=30,
    retention_seconds=180,
)
SMOKE = Sizes(
    append=20_000,
    naive=500,
    batched=10_000,
    indexed=20_000,
    keys=1_000,
    limit_records=20_000,
    limit=1_000,
    replay=50_000,
    latency_seconds=2,
    audiences=(1, 3),
    join_storm=(3, 2),
    own_view_audiences=(2,),
    derived_audiences=(3,),
    live_rate=500,
    decode_records=2_000,
    snapshot_interval=1,
    derived_source=5_000,
    derived_updates=3,
    retention_window_s=1,
    retention_seconds=3,
    smoke=True,
)


@dataclass
class Results:
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    score: Scorecard = field(default_factory=Scorecard)

    def add(self, scenario: str, **values: object) -> None:
        self.rows.append({"scenario": scenario, **values})
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        print(f"  {scenario}: {shown}", flush=True)

    @staticmethod
    def progress(text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


progress = Results.progress


def new_topic(kafka: LocalKafka, name: str) -> str:
    topic = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    kafka.create_topic(topic, partitions=PARTITIONS)
    return topic


def arrow_bytes_per_row(sample: int = 100_000) -> float:
    """Arrow size of the benchmark records as livetables decodes them."""
    decoder = BatchDecoder(decode_spec(TableConfig(topic="t", schema=SCHEMA)))
    values = [value(i) for i in range(sample)]
    raw = raw_batch("t", values)
    rows = decoder.decode(raw).rows
    assert isinstance(rows, pa.Table)
    return rows.nbytes / rows.num_rows


def replay_and_memory(kafka: LocalKafka, sizes: Sizes, results: Results) -> str:
    """Scenarios 3 and 5; returns the replay topic (scenario 7 restarts from it)."""
    progress("scenario 5 baseline: idle service memory")
    empty = new_topic(kafka, "empty")
    with ServedLivetables(kafka.bootstrap, {"t": {"topic": empty, "schema": SCHEMA}}) as idle:
        idle.wait_ready(120)
        idle_rss = idle.rss_bytes()
    topic, rss = bench_ingest.replay(kafka, sizes, results, new_topic)
    per_row = (rss - idle_rss) / sizes.replay
    arrow = arrow_bytes_per_row()
    results.add(
        "5 memory: resident bytes per row",
        rows=sizes.replay,
        rss_mb=rss / 2**20,
        idle_rss_mb=idle_rss / 2**20,
        bytes_per_row=per_row,
        arrow_bytes_per_row=arrow,
        ratio=per_row / arrow,
    )
    return topic


def replay_topic(kafka: LocalKafka, sizes: Sizes) -> str:
    progress(f"scenario 7: producing {sizes.replay:,} records")
    topic = new_topic(kafka, "replay")
    produce(kafka.bootstrap, topic, sizes.replay, PARTITIONS)
    return topic


def restart(kafka: LocalKafka, sizes: Sizes, results: Results, topic: str) -> None:
    progress(f"scenario 7: restart of a {sizes.replay:,}-row table: replay vs snapshot")
    bench_snapshots.restart(kafka, sizes, results, topic, new_topic)


GROUPS = {
    "targets": "Targets (issue 18): this run against each",
    "1": "1. Ingest, append table, no viewers (first row to caught up)",
    "2": "2. Ingest, indexed and rolling-window tables",
    "3": "3. Replay at start-up",
    "4": "4. Update latency under load (Kafka record timestamp to client callback)",
    "5": "5. Memory",
    "6": "6. Decode throughput per format (the batch decoders alone, one thread, no broker)",
    "7": "7. Restart from a snapshot, and snapshots under live load",
    "8": "8. Derived tables: what the source pays (engine only, 1000-row updates)",
    "9": "9. Derived tables: replicated viewers (record timestamp to client, refresh 250 ms)",
    "10": "10. Retention: rows and resident memory under a steady stream, window full",
    "cpu": "Where each record's CPU goes, scenarios 1-3 (µs of CPU per record)",
}
CPU_LEGEND = (
    "Stage clocks (`consume` … `book`: bookkeeping) are CPU on the stage's own thread; "
    "`t:` columns are thread groups (`cons`: consumer threads and their pyarrow helpers, "
    "`rdk`: librdkafka, `appl`: applier and Perspective's update helpers, `repl`: "
    "replicator, `loop`: IOLoop, `eng`: engine workers); `process` is the whole service, "
    "`broker` the Kafka broker; `cores` = (process + broker) * rate. `batch`: records per "
    "applied batch, the size the update-only ceiling uses."
)


def _table(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    lines = ["| " + " | ".join(keys) + " |", "| " + " | ".join("---" for _ in keys) + " |"]
    lines += ["| " + " | ".join(_fmt(r[k]) if k in r else "" for k in keys) + " |" for r in rows]
    return lines


def decode_formats(sizes: Sizes, results: Results) -> None:
    progress("scenario 6: decode throughput per format")
    rows = bench_formats.measure(
        records=sizes.decode_records, batch=min(10_000, sizes.decode_records)
    )
    json_rate = next(r["records_per_s"] for r in rows if r["format"] == "json")
    for row in rows:
        results.add(
            f"6 decode: {row['format']}",
            bytes_per_record=row["bytes_per_record"],
            rate=row["records_per_s"],
            vs_json=row["records_per_s"] / json_rate,
        )


def write_report(results: Results, path: Path, smoke: bool, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    lines = [
        "# livetables benchmark results" + (" (smoke run: tiny inputs)" if smoke else ""),
        "",
        f"Machine: {machine}. One livetables process; a local single-node Kafka broker on the",
        f"same machine. Suite time {seconds:,.0f} s. Records: small JSON (~55 bytes, 5 fields),",
        "pre-produced to a 4-partition topic. `ratio` = livetables' rate / that row's rate",
        "(for memory: resident bytes per row / Arrow bytes per row).",
    ]
    for prefix, title in GROUPS.items():
        if prefix == "targets":
            rows = results.score.rows()
        else:
            rows = [r for r in results.rows if str(r["scenario"]).startswith(prefix + " ")]
        if rows:
            lines += ["", f"## {title}", "", *_table(rows)]
            if prefix == "cpu":
                lines += ["", CPU_LEGEND]
    lines += ["", *results.notes]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny inputs: checks the suite runs")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting a local broker")
    parser.add_argument(
        "--only",
        choices=["ingest", "replay", "latency", "formats", "snapshots", "derived"],
        action="append",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--audiences", help="replicated audiences of scenario 4, e.g. 1,50,200 (default: all)"
    )
    parser.add_argument("--latency-seconds", type=float, help="measured span of scenario 4")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.audiences:
        sizes = replace(sizes, audiences=tuple(int(a) for a in args.audiences.split(",")))
    if args.latency_seconds:
        sizes = replace(sizes, latency_seconds=args.latency_seconds)
    out = args.out or (HERE / "out" / "RESULTS-smoke.md" if args.smoke else HERE / "RESULTS.md")
    results = Results()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="livetables-bench-kafka-") as workdir:
        kafka = LocalKafka(workdir, heap="2g", quick_start=False)
        if args.bootstrap:
            kafka.port = int(args.bootstrap.rsplit(":", 1)[1])
        else:
            progress("starting a local Kafka broker")
            kafka.start()
        try:
            scenarios = args.only or [
                "ingest",
                "replay",
                "latency",
                "formats",
                "snapshots",
                "derived",
            ]
            if "ingest" in scenarios:
                bench_ingest.append(kafka, sizes, results, new_topic)
                bench_ingest.indexed_and_limit(kafka, sizes, results, new_topic)
            topic = None
            if "replay" in scenarios:
                topic = replay_and_memory(kafka, sizes, results)
            if "snapshots" in scenarios:
                restart(kafka, sizes, results, topic or replay_topic(kafka, sizes))
            if "latency" in scenarios:
                latency(kafka, sizes, results, new_topic)
            if "formats" in scenarios:
                decode_formats(sizes, results)
            if "derived" in scenarios:
                bench_derived.source_update_cost(
                    sizes.derived_source, sizes.derived_updates, results
                )
                bench_derived.replicated_viewers(kafka, sizes, results, new_topic)
                bench_derived.retention_memory(kafka, sizes, results, new_topic)
        finally:
            if not args.bootstrap:
                kafka.stop()
    write_report(results, out, args.smoke, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
