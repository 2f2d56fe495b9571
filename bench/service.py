"""Run ``livetables serve`` as its own process and watch it from outside.

The service runs exactly as users run it (a subprocess with a YAML file), so
its CPU time and resident memory are its own, separate from the load generators.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from service.localkafka.broker import free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.02  # /readyz: cheap for the service; /metrics is polled only until the first record


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


class ServedLivetables:
    """A ``livetables serve`` process with one config; a context manager."""

    def __init__(
        self,
        bootstrap: str,
        tables: dict,
        log_dir: Path | None = None,
        extra: dict | None = None,
        log_level: str = "WARNING",
        server: dict | None = None,
    ) -> None:
        self.port = free_port()
        self.workdir = tempfile.TemporaryDirectory(prefix="livetables-bench-")
        self.config_path = Path(self.workdir.name) / "bench.yaml"
        config = {
            "kafka": {"bootstrap_servers": bootstrap},
            "server": {"host": "127.0.0.1", "port": self.port, **(server or {})},
            "tables": tables,
            **(extra or {}),  # other top-level sections (snapshots, ...)
        }
        self.config_path.write_text(yaml.safe_dump(config))
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = (log_dir or Path(self.workdir.name)) / f"serve-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.log_level = log_level

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedLivetables:
        self.log = open(self.log_path, "wb")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "--log-level",
                self.log_level,
                "serve",
                "--config",
                str(self.config_path),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        self.workdir.cleanup()

    def metrics_text(self) -> str:
        status, text = _get(f"{self.url}/metrics")
        return text if status == 200 else ""

    def terminate(self, timeout: float = 300.0) -> float:
        """SIGTERM and wait for the exit; seconds it took (a clean shutdown's work included)."""
        assert self.process is not None
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        if code != 0:
            raise RuntimeError(f"livetables exited with {code}; see {self.log_path}")
        return time.perf_counter() - started

    def consumed(self, table: str) -> float:
        status, text = _get(f"{self.url}/metrics")
        if status != 200:
            return -1
        match = re.search(
            rf'^livetables_records_consumed_total\{{table="{re.escape(table)}"\}} (\S+)$',
            text,
            re.MULTILINE,
        )
        return float(match.group(1)) if match else 0.0

    def ready(self) -> bool:
        return _get(f"{self.url}/readyz")[0] == 200

    def wait_ready(self, timeout: float) -> float:
        """Seconds from process start until /readyz answers 200."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.ready():
                return time.perf_counter() - self.started_at
            self._check_alive()
            time.sleep(0.01)
        raise TimeoutError(f"livetables not ready within {timeout}s; see {self.log_path}")

    def ingest_rate(
        self, table: str, records: int, timeout: float, on_first: Callable[[], None] | None = None
    ) -> dict:
        """Records/s from the first consumed record until the table is caught up.

        Until the first record, ``/metrics`` is polled; after it only ``/readyz``, which
        costs the service next to nothing (the records are produced beforehand, so
        ready means every one of them applied). ``on_first`` runs at the first record
        (the benchmark's accounting snapshot).
        """
        deadline = time.perf_counter() + timeout
        first_at, first_count = None, 0.0
        while first_at is None and time.perf_counter() < deadline:
            count = self.consumed(table)
            if count > 0:
                first_at, first_count = time.perf_counter(), count
                if on_first is not None:
                    on_first()
                break
            self._check_alive()
            time.sleep(0.01)
        while time.perf_counter() < deadline:
            if self.ready():
                now = time.perf_counter()
                if self.consumed(table) < records:
                    raise RuntimeError(f"table {table} ready before all {records} records")
                # Tiny inputs can finish within one poll: count at least one poll interval.
                elapsed = max(now - (first_at or now), POLL_S)
                # ... and if all of them were in by the first poll, count them all.
                counted = records - first_count or records
                return {
                    "records": records,
                    "seconds": elapsed,
                    "rate": counted / elapsed,
                    "counted": counted,
                }
            self._check_alive()
            time.sleep(POLL_S)
        raise TimeoutError(f"table {table} not caught up within {timeout}s; see {self.log_path}")

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"livetables exited with {self.process.returncode}; see {self.log_path}"
            )

    def rss_bytes(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
