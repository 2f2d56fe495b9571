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
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from bench import baselines
from bench import derived as bench_derived
from bench import formats as bench_formats
from bench import snapshots as bench_snapshots
from bench.latency import LIVE_SCHEMA, Clients, LiveProducer
from bench.peers import CSP_PYTHON, run_csp_ingest
from bench.records import SCHEMA, produce, raw_batch, value
from bench.service import ServedLivetables
from connectors.decoding import BatchDecoder
from service.config import TableConfig, decode_spec
from service.localkafka import LocalKafka

HERE = Path(__file__).parent
LOGS = HERE / "out"
PARTITIONS = 4
# Every benchmark client connects from one address: let the largest audience in.
AUDIENCE_LIMITS = {"max_websocket_sessions_per_address": 1000}


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
    audiences: tuple[int, ...]
    own_view_audiences: tuple[int, ...]
    live_rate: int
    decode_records: int
    snapshot_interval: int
    derived_source: int
    derived_updates: int
    retention_window_s: int
    retention_seconds: int


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
    audiences=(50, 500),
    own_view_audiences=(50,),
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
    audiences=(3,),
    own_view_audiences=(2,),
    live_rate=500,
    decode_records=2_000,
    snapshot_interval=1,
    derived_source=5_000,
    derived_updates=3,
    retention_window_s=1,
    retention_seconds=3,
)


@dataclass
class Results:
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, scenario: str, **values: object) -> None:
        self.rows.append({"scenario": scenario, **values})
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        print(f"  {scenario}: {shown}", flush=True)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def new_topic(kafka: LocalKafka, name: str) -> str:
    topic = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    kafka.create_topic(topic, partitions=PARTITIONS)
    return topic


def run_livetables(kafka: LocalKafka, topic: str, records: int, **table: object) -> dict:
    tables = {"t": {"topic": topic, "format": "json", "schema": SCHEMA, **table}}
    with ServedLivetables(kafka.bootstrap, tables) as served:
        return served.ingest_rate("t", records, timeout=600)


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


def rate(outcome: dict) -> float:
    return outcome["records"] / outcome["seconds"] if outcome["seconds"] else float("nan")


def ingest(kafka: LocalKafka, sizes: Sizes, results: Results) -> None:
    progress(f"scenario 1: append table; producing {sizes.append:,} records")
    topic = new_topic(kafka, "append")
    produce(kafka.bootstrap, topic, sizes.append, PARTITIONS)
    progress("scenario 1: livetables")
    ours = run_livetables(kafka, topic, sizes.append)
    results.add(
        "1 append: livetables", records=sizes.append, seconds=ours["seconds"], rate=ours["rate"]
    )
    progress(f"scenario 1: naive baseline on {sizes.naive:,} records")
    naive = baselines.naive(kafka.bootstrap, topic, PARTITIONS, sizes.naive)
    results.add(
        "1 append: (a) naive, one update per record",
        records=naive["records"],
        seconds=naive["seconds"],
        rate=rate(naive),
        ratio=ours["rate"] / rate(naive),
        target_ratio=200,
    )
    progress(f"scenario 1: batched baseline on {sizes.batched:,} records")
    batched = baselines.batched(kafka.bootstrap, topic, PARTITIONS, sizes.batched)
    results.add(
        "1 append: (b) batched json.loads + update(list)",
        records=batched["records"],
        seconds=batched["seconds"],
        rate=rate(batched),
        ratio=ours["rate"] / rate(batched),
        target_ratio=4,
    )
    progress("scenario 1: csp peer")
    peer = run_csp(kafka, topic, sizes.batched, build=sizes is FULL)
    if isinstance(peer, str):
        results.add("1 append: (c) csp Kafka adapter + Perspective", status=peer)
    else:
        results.add(
            "1 append: (c) csp Kafka adapter + Perspective",
            records=peer["records"],
            seconds=peer["seconds"],
            rate=peer["rate"],
            ratio=ours["rate"] / peer["rate"],
            target_ratio=2,
        )

    progress(f"scenario 2: indexed table, {sizes.indexed:,} records over {sizes.keys:,} keys")
    topic = new_topic(kafka, "indexed")
    produce(kafka.bootstrap, topic, sizes.indexed, PARTITIONS, key_space=sizes.keys)
    ours = run_livetables(kafka, topic, sizes.indexed, index="i")
    results.add(
        "2 indexed: livetables",
        records=sizes.indexed,
        seconds=ours["seconds"],
        rate=ours["rate"],
        target_rate=800_000,
    )
    batched = baselines.batched(
        kafka.bootstrap, topic, PARTITIONS, min(sizes.batched, sizes.indexed), index="i"
    )
    results.add(
        "2 indexed: (b) batched baseline",
        records=batched["records"],
        seconds=batched["seconds"],
        rate=rate(batched),
        ratio=ours["rate"] / rate(batched),
    )

    progress(f"scenario 2: limit table, {sizes.limit_records:,} records, limit {sizes.limit:,}")
    topic = new_topic(kafka, "limit")
    produce(kafka.bootstrap, topic, sizes.limit_records, PARTITIONS)
    ours = run_livetables(kafka, topic, sizes.limit_records, limit=sizes.limit)
    results.add(
        "2 limit: livetables",
        records=sizes.limit_records,
        seconds=ours["seconds"],
        rate=ours["rate"],
        target_rate=500_000,
    )
    batched = baselines.batched(
        kafka.bootstrap,
        topic,
        PARTITIONS,
        min(sizes.batched, sizes.limit_records),
        limit=sizes.limit,
    )
    results.add(
        "2 limit: (b) batched baseline",
        records=batched["records"],
        seconds=batched["seconds"],
        rate=rate(batched),
        ratio=ours["rate"] / rate(batched),
    )


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
    progress(f"scenario 3: replay; producing {sizes.replay:,} records")
    topic = new_topic(kafka, "replay")
    produce(kafka.bootstrap, topic, sizes.replay, PARTITIONS)
    progress("scenario 3: start livetables, wait for /readyz")
    with ServedLivetables(kafka.bootstrap, {"t": {"topic": topic, "schema": SCHEMA}}) as served:
        seconds = served.wait_ready(900)
        rss = served.rss_bytes()
        cpu = served.cpu_seconds()
    results.add(
        "3 replay: process start to /readyz 200",
        records=sizes.replay,
        seconds=seconds,
        rate=sizes.replay / seconds,
        target_seconds=15,
        cpu_seconds=cpu,
    )
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


def latency(kafka: LocalKafka, sizes: Sizes, results: Results) -> None:
    for own_view, audiences in ((False, sizes.audiences), (True, sizes.own_view_audiences)):
        for audience in audiences:
            kind = "own server view each" if own_view else "replicated (shared feed)"
            progress(f"scenario 4: {audience} clients, {kind}, {sizes.live_rate:,} records/s")
            topic = new_topic(kafka, "live")
            tables = {
                "t": {"topic": topic, "schema": LIVE_SCHEMA, "limit": 100_000, "start": "latest"}
            }
            with ServedLivetables(
                kafka.bootstrap, tables, log_dir=LOGS, server=AUDIENCE_LIMITS
            ) as served:
                served.wait_ready(120)
                # Clients join first, then the stream starts: every client sees the same
                # stream, and joining does not compete with it.
                with (
                    Clients(served.url.replace("http", "ws"), "t", audience, own_view) as clients,
                    LiveProducer(kafka.bootstrap, topic, sizes.live_rate),
                ):
                    time.sleep(min(2.0, sizes.latency_seconds))  # warm-up: not measured
                    clients.recording = True
                    cpu_before, started = served.cpu_seconds(), time.perf_counter()
                    time.sleep(sizes.latency_seconds)
                    elapsed = time.perf_counter() - started
                    cpu = (served.cpu_seconds() - cpu_before) / elapsed
                    clients.recording = False
                    stats = clients.percentiles()
            results.add(
                f"4 latency: {audience} clients, {kind}",
                clients=audience,
                p50_ms=stats["p50_ms"],
                p99_ms=stats["p99_ms"],
                server_cpu_cores=cpu,
                measured_records=stats["records"],
            )


GROUPS = {
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
}


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
    for prefix, title in sorted(GROUPS.items(), key=lambda item: int(item[0])):
        rows = [r for r in results.rows if str(r["scenario"]).startswith(prefix + " ")]
        if rows:
            lines += ["", f"## {title}", "", *_table(rows)]
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
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
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
                ingest(kafka, sizes, results)
            topic = None
            if "replay" in scenarios:
                topic = replay_and_memory(kafka, sizes, results)
            if "snapshots" in scenarios:
                restart(kafka, sizes, results, topic or replay_topic(kafka, sizes))
            if "latency" in scenarios:
                latency(kafka, sizes, results)
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
