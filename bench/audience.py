"""Scenario 4: Kafka-to-client latency at a steady rate, as the audience grows.

One service per run; the clients (``bench/clients.py``) in a process of their own join
first, then the stream starts, a warm-up passes, and only then are samples kept. The
replicated audiences run in one suite run so their p99s compare; the connect storm
adds ``join`` clients at once a quarter into the measured span of a full audience.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.latency import LIVE_SCHEMA, ClientProcess, LiveProducer
from bench.service import ServedLivetables
from service.localkafka import LocalKafka

if TYPE_CHECKING:
    from bench.__main__ import Results, Sizes

# Every benchmark client connects from one address: let the largest audience in.
AUDIENCE_LIMITS = {
    "max_websocket_sessions_per_address": 2000,
    "max_connections_per_address": 2000,
}
LOGS = Path(__file__).parent / "out"


def live_run(
    kafka: LocalKafka,
    topic: str,
    sizes: Sizes,
    audience: int,
    own_view: bool = False,
    join: int = 0,
) -> dict:
    """One measured span; the clients' figures plus the service's CPU (cores)."""
    tables = {"t": {"topic": topic, "schema": LIVE_SCHEMA, "limit": 100_000, "start": "latest"}}
    with ServedLivetables(kafka.bootstrap, tables, log_dir=LOGS, server=AUDIENCE_LIMITS) as served:
        served.wait_ready(120)
        url = served.url.replace("http", "ws")
        with (
            ClientProcess(url, "t", audience, own_view) as clients,
            LiveProducer(kafka.bootstrap, topic, sizes.live_rate),
        ):
            time.sleep(min(2.0, sizes.latency_seconds))  # warm-up: not measured
            clients.record()
            cpu_before, started = served.cpu_seconds(), time.perf_counter()
            if join:
                time.sleep(sizes.latency_seconds / 4)
                clients.join(join)
                time.sleep(sizes.latency_seconds * 3 / 4)
            else:
                time.sleep(sizes.latency_seconds)
            elapsed = time.perf_counter() - started
            stats = clients.results()
            stats["server_cpu_cores"] = (served.cpu_seconds() - cpu_before) / elapsed
    return stats


def latency(
    kafka: LocalKafka,
    sizes: Sizes,
    results: Results,
    new_topic: Callable[[LocalKafka, str], str],
) -> None:
    p99: dict[int, float] = {}
    for audience in sizes.audiences:
        results.progress(f"scenario 4: {audience} replicated clients, {sizes.live_rate:,} rec/s")
        stats = live_run(kafka, new_topic(kafka, "live"), sizes, audience)
        p99[audience] = stats["p99_ms"]
        _add(results, f"4 latency: {audience} clients, replicated (shared feed)", audience, stats)
    if 50 in p99:
        results.score.record("p99_50", p99[50])
    if 500 in p99:
        results.score.record("p99_500", p99[500])
    if 1 in p99 and len(p99) > 1:
        wide = 200 if 200 in p99 else max(p99)
        note = "" if wide == 200 else f"{wide} clients (smaller run)"
        results.score.record("p99_ratio", p99[wide] / p99[1], note)

    audience, joining = sizes.join_storm
    results.progress(f"scenario 4: {audience} replicated clients while {joining} more connect")
    stats = live_run(kafka, new_topic(kafka, "live"), sizes, audience, join=joining)
    _add(
        results,
        f"4 latency: {audience} clients, replicated, {joining} joining at once",
        audience,
        stats,
        join_p99_s=stats["join_p99_s"],
    )
    results.score.record("p99_join", stats["p99_ms"], "" if audience == 500 else "smaller run")

    for audience in sizes.own_view_audiences:
        results.progress(f"scenario 4: {audience} clients with a server view each")
        stats = live_run(kafka, new_topic(kafka, "live"), sizes, audience, own_view=True)
        _add(results, f"4 latency: {audience} clients, own server view each", audience, stats)


def _add(results: Results, scenario: str, audience: int, stats: dict, **extra: float) -> None:
    results.add(
        scenario,
        clients=audience,
        p50_ms=stats["p50_ms"],
        p99_ms=stats["p99_ms"],
        max_ms=stats["max_ms"],
        server_cores=stats["server_cpu_cores"],
        measured_records=stats["records"],
        **extra,
    )
