"""Derived tables and retention under load (scenario groups 8, 9 and 10).

* What a derived table costs its source: the engine updates the grouped views
  inside every update of the source, measured in-process on a 1M-row rolling
  window (no broker: the engine alone), against the same source with no view
  and with Perspective's own ``avg`` (which re-reads whole groups).
* Replicated viewers of a derived table over a 1M-row source: 500 groups fed
  at a steady rate; the viewers replicate the 500-row table, not the source.
  Latency is from the Kafka record timestamp of the newest record of a group
  (the group's ``t: last``) to the client holding the refreshed row, so it
  includes the refresh interval (250 ms by default).
* Retention: rows and resident memory of a table with ``retention: 30s`` under
  a steady stream, sampled over a few minutes: once the window is full both
  stay flat.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from bench.latency import LIVE_SCHEMA, ClientProcess, LiveProducer
from bench.records import bulk_producer
from bench.service import ServedLivetables
from connectors.base import DecodedBatch
from service.config import parse_config, resolve_config
from service.derived.table import DerivedTable
from service.ingest.writer import TableWriter
from service.metrics import Metrics
from service.replication import Replicator
from service.tables import TableHost

if TYPE_CHECKING:
    from bench.__main__ import Results, Sizes
    from service.localkafka import LocalKafka

GROUPS = 500
SOURCE_SCHEMA = {"g": "string", "p": "float", "q": "integer", "t": "datetime"}
SUMMARY_VIEW = {
    "group_by": ["g"],
    "columns": ["q", "p", "t"],
    "aggregates": {"q": "sum", "p": "avg", "t": "last"},
}


def group_value(seq: int, rng: random.Random) -> bytes:
    """A record of one of 500 groups, stamped with its send time (epoch ms)."""
    now_ms = int(time.time() * 1000)
    return (
        f'{{"g":"G{rng.randrange(GROUPS):03d}","p":{rng.random() * 100:.2f},'
        f'"q":{seq % 1000},"t":{now_ms}}}'
    ).encode()


def _progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- what the source pays, in-process ------------------------------------------------------


def _batch(rng: np.random.Generator, rows: int) -> pa.Table:
    return pa.table(
        {
            "g": pa.array(np.char.add("G", rng.integers(0, GROUPS, rows).astype("U3"))),
            "p": pa.array(rng.random(rows) * 100),
            "q": pa.array(rng.integers(0, 1000, rows), pa.int64()),
            "t": pa.array(np.full(rows, int(time.time() * 1000)), pa.int64()).cast(
                pa.timestamp("ms")
            ),
        }
    )


def _engine(source_rows: int, view: dict | None) -> tuple[TableHost, TableWriter, list]:
    tables: dict = {"src": {"topic": "x", "schema": SOURCE_SCHEMA, "limit": source_rows}}
    if view is not None:
        tables["summary"] = {"from": "src", "view": view}
    config, _ = resolve_config(parse_config({"tables": tables}))
    host = TableHost(config)
    metrics = Metrics("bench")
    writer = TableWriter(host, Replicator(host), metrics)
    derived = []
    if view is not None:
        derived.append(
            DerivedTable(
                "summary",
                config.tables["summary"],
                config.tables["src"].columns,
                host,
                writer,
                metrics,
                lambda: None,
            )
        )
    return host, writer, derived


def source_update_cost(source_rows: int, updates: int, results: Results) -> None:
    """Median time of a 1000-row update of the source, and of a refresh, per variant."""
    variants: list[tuple[str, dict | None, Callable | None]] = [
        ("no derived table", None, None),
        ("derived table: q sum, p avg, t last", SUMMARY_VIEW, None),
        (
            "(for comparison) one view with Perspective's own p avg",
            None,
            lambda table: table.view(
                group_by=["g"],
                columns=["q", "p"],
                aggregates={"q": "sum", "p": "avg"},
                group_rollup_mode="flat",
            ),
        ),
    ]
    rng = np.random.default_rng(3)
    for label, view, raw_view in variants:
        _progress(f"scenario 7: source update cost, {source_rows:,}-row source, {label}")
        host, writer, derived = _engine(source_rows, view)
        extra = []
        try:
            for start in range(0, source_rows, 50_000):
                rows = _batch(rng, min(50_000, source_rows - start))
                writer.write("src", DecodedBatch(rows=rows))
            if raw_view is not None:
                extra.append(raw_view(host.tables["src"]))
            for table in derived:
                table.refresh()
            update_ms, refresh_ms, small_refresh_ms = [], [], []
            for _ in range(updates):
                batch = DecodedBatch(rows=_batch(rng, 1000))
                started = time.perf_counter()
                writer.write("src", batch)
                update_ms.append((time.perf_counter() - started) * 1000)
                for table in derived:
                    started = time.perf_counter()
                    table.refresh()
                    refresh_ms.append((time.perf_counter() - started) * 1000)
                    # A batch touching 5 groups: the refresh writes 5 rows, not 500.
                    few = _batch(rng, 5)
                    writer.write("src", DecodedBatch(rows=few))
                    started = time.perf_counter()
                    table.refresh()
                    small_refresh_ms.append((time.perf_counter() - started) * 1000)
            row: dict = {
                "source_rows": host.size("src"),
                "update_1k_rows_p50_ms": statistics.median(update_ms),
            }
            if refresh_ms:
                row["refresh_500_groups_changed_p50_ms"] = statistics.median(refresh_ms)
                row["refresh_5_groups_changed_p50_ms"] = statistics.median(small_refresh_ms)
            results.add(f"8 derived cost: {label}", **row)
        finally:
            for made in extra:
                made.delete()
            for table in derived:
                table.close()
            host.close()


# -- replicated viewers of a derived table -------------------------------------------------


def _preload(bootstrap: str, topic: str, count: int) -> None:
    producer = bulk_producer(bootstrap)
    rng = random.Random(9)
    for seq in range(count):
        while True:
            try:
                producer.produce(topic, group_value(seq, rng), partition=seq % 4)
                break
            except BufferError:
                producer.poll(0.01)
        if seq % 50_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("benchmark records not delivered")


def _histogram_mean(served: ServedLivetables, name: str, table: str) -> float:
    from bench.service import _get

    status, text = _get(f"{served.url}/metrics")
    if status != 200:
        return float("nan")
    values = {}
    for line in text.splitlines():
        for part in ("sum", "count"):
            prefix = f'{name}_{part}{{table="{table}"}} '
            if line.startswith(prefix):
                values[part] = float(line[len(prefix) :])
    if not values.get("count"):
        return float("nan")
    return values["sum"] / values["count"]


def replicated_viewers(kafka: LocalKafka, sizes: Sizes, results: Results, new_topic) -> None:
    topic = new_topic(kafka, "derived")
    _progress(f"scenario 7: preloading {sizes.derived_source:,} records over {GROUPS} groups")
    _preload(kafka.bootstrap, topic, sizes.derived_source)
    tables = {
        "t": {
            "topic": topic,
            "schema": SOURCE_SCHEMA,
            "limit": sizes.derived_source,
            "start": "earliest",
        },
        "summary": {"from": "t", "view": SUMMARY_VIEW},
    }
    for audience in sizes.derived_audiences:
        _progress(
            f"scenario 9: {audience} replicated viewers of a {GROUPS}-row derived table, "
            f"{sizes.live_rate:,} records/s into a {sizes.derived_source:,}-row source"
        )
        with ServedLivetables(
            kafka.bootstrap, tables, server={"max_websocket_sessions_per_address": 1000}
        ) as served:
            served.wait_ready(600)
            url = served.url.replace("http", "ws")
            with (
                ClientProcess(url, "summary", audience, own_view=False) as clients,
                LiveProducer(kafka.bootstrap, topic, sizes.live_rate, group_value),
            ):
                time.sleep(min(2.0, sizes.latency_seconds))
                clients.record()
                cpu_before, started = served.cpu_seconds(), time.perf_counter()
                time.sleep(sizes.latency_seconds)
                elapsed = time.perf_counter() - started
                cpu = (served.cpu_seconds() - cpu_before) / elapsed
                stats = clients.results()
                rss = served.rss_bytes()
            # Read once the clients are gone: a loaded service may answer /metrics slowly.
            update_ms = 1000 * _histogram_mean(served, "livetables_update_duration_seconds", "t")
            refresh_ms = 1000 * _histogram_mean(
                served, "livetables_derived_refresh_seconds", "summary"
            )
        results.add(
            f"9 derived viewers: {audience} replicated viewers of a {GROUPS}-row derived table",
            clients=audience,
            source_rows=sizes.derived_source,
            p50_ms=stats["p50_ms"],
            p99_ms=stats["p99_ms"],
            server_cpu_cores=cpu,
            source_update_mean_ms=update_ms,
            refresh_mean_ms=refresh_ms,
            rss_mb=rss / 2**20,
        )


# -- retention under a steady stream -------------------------------------------------------


def _rows(served: ServedLivetables, table: str) -> int:
    import json

    from bench.service import _get

    status, text = _get(f"{served.url}/api/tables")
    if status != 200:
        return -1
    return next(t["rows"] for t in json.loads(text) if t["name"] == table)


def retention_memory(kafka: LocalKafka, sizes: Sizes, results: Results, new_topic) -> None:
    window = sizes.retention_window_s
    topic = new_topic(kafka, "retention")
    tables = {
        "t": {
            "topic": topic,
            "schema": LIVE_SCHEMA,
            "retention": f"{window}s",
            "start": "latest",
        }
    }
    _progress(
        f"scenario 7: retention {window}s, {sizes.live_rate:,} records/s for "
        f"{sizes.retention_seconds} s"
    )
    samples: list[tuple[float, int, int]] = []
    with ServedLivetables(kafka.bootstrap, tables) as served:
        served.wait_ready(120)
        with LiveProducer(kafka.bootstrap, topic, sizes.live_rate):
            started = time.perf_counter()
            step = max(1.0, sizes.retention_seconds / 18)
            while time.perf_counter() - started < sizes.retention_seconds:
                time.sleep(step)
                elapsed = time.perf_counter() - started
                samples.append((elapsed, _rows(served, "t"), served.rss_bytes()))
    full = [s for s in samples if s[0] >= 2 * window] or samples[-1:]
    rss_mb = [s[2] / 2**20 for s in full]
    rows = [s[1] for s in full]
    results.add(
        f"10 retention: {window}s window, {sizes.live_rate:,} records/s, "
        f"{sizes.retention_seconds} s",
        rows_min=min(rows),
        rows_max=max(rows),
        rss_first_mb=rss_mb[0],
        rss_last_mb=rss_mb[-1],
        rss_max_mb=max(rss_mb),
        samples=len(full),
    )
    results.notes.append(
        f"Retention {window}s at {sizes.live_rate:,} records/s, samples (s, rows, RSS MB): "
        + ", ".join(f"({t:.0f}, {r:,}, {m / 2**20:.0f})" for t, r, m in samples)
    )
