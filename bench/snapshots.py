"""Restart from a snapshot vs full replay, and what taking snapshots costs live ingestion.

One configuration, three runs of ``livetables serve`` on the same topics:

1. replay: the table ``big`` (every record of the replay topic, plus the live
   topic) is read from Kafka; process start to ``/readyz`` 200 is timed; SIGTERM
   writes its snapshot (timed too);
2. restore: the same configuration starts from that snapshot (timed the same
   way); then 10k records/s flow for a while with no snapshot being taken;
3. restore again, with a snapshot of ``big`` every few seconds while the same
   10k records/s flow.

Runs 2 and 3 measure, side by side, the latency a replicated client sees on a
small table fed by the live topic (``probe``: the applier is shared, so a stall
of ``big`` would show there) and the longest ``/healthz`` answer (the IOLoop).
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.latency import LIVE_SCHEMA, ClientProcess, LiveProducer
from bench.service import ServedLivetables

PROBE_LIMIT = 1000
LOGS = Path(__file__).parent / "out"


def _served(snapshots: dict) -> dict:
    """Logs kept in bench/out at INFO: each table's start says how long its load took."""
    return {"extra": {"snapshots": snapshots}, "log_dir": LOGS, "log_level": "INFO"}


def _tables(replay_topic: str, live_topic: str) -> dict:
    return {
        "big": {"topics": [replay_topic, live_topic], "schema": LIVE_SCHEMA},
        "probe": {"topic": live_topic, "schema": LIVE_SCHEMA, "limit": PROBE_LIMIT},
    }


class HealthProbe:
    """Asks ``/healthz`` every 20 ms; keeps the longest answer (the IOLoop's stalls)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
                    response.read()
            except OSError:
                continue
            self.longest = max(self.longest, time.perf_counter() - started)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def _metrics(served: ServedLivetables) -> str:
    with urllib.request.urlopen(served.url + "/metrics", timeout=10) as response:
        return response.read().decode()


def _live_window(served: ServedLivetables, live_topic: str, bootstrap: str, sizes) -> dict:
    url = served.url.replace("http", "ws")
    with (
        ClientProcess(url, "probe", 5, own_view=False) as clients,
        LiveProducer(bootstrap, live_topic, sizes.live_rate),
        HealthProbe(served.url) as probe,
    ):
        time.sleep(min(2.0, sizes.latency_seconds))  # warm-up: not measured
        before = _metrics(served)
        clients.record()
        time.sleep(sizes.latency_seconds * 1.5)
        stats = clients.results()
        after = _metrics(served)
    count = "livetables_snapshot_duration_seconds_count"
    total = "livetables_snapshot_duration_seconds_sum"
    written = _metric(after, count, table="big") - _metric(before, count, table="big")
    seconds = _metric(after, total, table="big") - _metric(before, total, table="big")
    return {
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
        "healthz_max_ms": probe.longest * 1000,
        "snapshots": written,
        "snapshot_s": seconds / written if written else 0.0,
        "measured_records": stats["records"],
    }


def restart(kafka, sizes, results, replay_topic: str, new_topic) -> None:
    """Scenario 7: start-to-ready from a snapshot next to the full replay, and the stall."""
    live_topic = new_topic(kafka, "snapshot-live")
    tables = _tables(replay_topic, live_topic)
    with tempfile.TemporaryDirectory(prefix="livetables-bench-snapshots-") as directory:
        slow = {"dir": directory, "interval": "1h"}  # the shutdown snapshot only
        with ServedLivetables(kafka.bootstrap, tables, **_served(slow)) as served:
            replay_s = served.wait_ready(900)
            stop_s = served.terminate()
        size = sum(p.stat().st_size for p in Path(directory, "big").glob("*.snapshot"))
        results.add(
            "7 restart: full replay, process start to /readyz 200",
            rows=sizes.replay,
            seconds=replay_s,
            shutdown_s=stop_s,
            snapshot_mb=size / 2**20,
        )
        with ServedLivetables(kafka.bootstrap, tables, **_served(slow)) as served:
            restore_s = served.wait_ready(900)
            quiet = _live_window(served, live_topic, kafka.bootstrap, sizes)
        results.add(
            "7 restart: from the snapshot, process start to /readyz 200",
            rows=sizes.replay,
            seconds=restore_s,
            ratio=replay_s / restore_s,
            target_ratio=5,
        )
        busy_interval = f"{sizes.snapshot_interval}s"
        busy = {"dir": directory, "interval": busy_interval}
        with ServedLivetables(kafka.bootstrap, tables, **_served(busy)) as served:
            served.wait_ready(900)
            snapshotting = _live_window(served, live_topic, kafka.bootstrap, sizes)
    rate = f"{sizes.live_rate:,} records/s"
    results.add(f"7 live at {rate}: no snapshot taken", rows=sizes.replay, **quiet)
    results.add(
        f"7 live at {rate}: a snapshot of the table every {busy_interval}",
        rows=sizes.replay,
        **snapshotting,
    )
