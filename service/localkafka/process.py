"""A child JVM this process owns, and Maven fetches into the cache: shared by the broker
and schema-registry runners.

A child runs in a session of its own (so stopping it stops everything it started),
writes to a log file named in every error, and is ready when a probe says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO


class LocalKafkaError(RuntimeError):
    """The local broker cannot be fetched or started; the message says what to do."""


def require_tools(what: str, hint: str = "") -> None:
    """Java and Maven on PATH, or a clear error saying what needs them."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise LocalKafkaError(f"{what} needs `{tool}` on PATH (Java 17+ and Maven){hint}")


def run_maven(arguments: list[str], cwd: str | os.PathLike[str], what: str) -> None:
    """Run ``mvn -B -q ARGUMENTS``; on failure raise with the tail of its output."""
    result = subprocess.run(
        ["mvn", "-B", "-q", *arguments], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise LocalKafkaError(f"fetching {what} with Maven failed:\n{tail}")


def announce_fetch(what: str, where: Path) -> None:
    print(
        f"livetables: fetching {what} with Maven (once) into {where}", file=sys.stderr, flush=True
    )


class ChildProcess:
    """One long-running child: ``launch()``, ``wait_until()``, ``stop()``."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def launch(self, command: list[str], cwd: str | os.PathLike[str] | None = None) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self._process = subprocess.Popen(
            command, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (the benchmark reads its CPU time)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready()`` until it is true; fail if the child exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise LocalKafkaError(
                    f"{self.name} exited with {self._process.returncode}; see {self.log_path}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise LocalKafkaError(
            f"{self.name} did not start within {timeout:.0f}s; see {self.log_path}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None
