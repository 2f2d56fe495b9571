"""Fetch Apicurio Registry with Maven, once, and run it on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from service.localkafka.broker import free_port
from service.localkafka.jars import LocalKafkaError, cache_dir

# 3.0.x is the newest line that runs on Java 17 (later lines need Java 21).
APICURIO_VERSION = "3.0.9"
CCOMPAT_PATH = "/apis/ccompat/v7"


def ensure_registry(version: str = APICURIO_VERSION, quiet: bool = False) -> Path:
    """The runner jar of Apicurio Registry, fetched with Maven on first use."""
    home = cache_dir() / f"apicurio-registry-{version}"
    runner = home / f"apicurio-registry-app-{version}-runner.jar"
    marker = home / ".complete"
    if marker.exists() and runner.exists():
        return runner
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise LocalKafkaError(
                f"the local schema registry needs `{tool}` on PATH (Java 17+, Maven)"
            )
    if not quiet:
        print(
            f"livetables: fetching Apicurio Registry {version} with Maven (once) into {home}",
            file=sys.stderr,
            flush=True,
        )
    # The distribution archive alone: its parent POM is not on Maven Central, so the
    # artifact is copied by coordinates rather than resolved as a dependency.
    artifact = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
    with tempfile.TemporaryDirectory(prefix="livetables-mvn-") as work:
        staging = Path(work, "dist")
        command = [
            "mvn",
            "-B",
            "-q",
            "dependency:copy",
            f"-Dartifact={artifact}",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
        archives = list(staging.glob("*.tar.gz")) if staging.exists() else []
        if result.returncode != 0 or len(archives) != 1:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise LocalKafkaError(f"fetching Apicurio Registry with Maven failed:\n{tail}")
        unpacked = Path(work, "unpacked")
        with tarfile.open(archives[0]) as archive:
            archive.extractall(unpacked, filter="data")
        if home.exists():
            shutil.rmtree(home)
        home.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(unpacked, home)
    if not runner.exists():
        raise LocalKafkaError(f"the Apicurio Registry archive has no {runner.name}")
    marker.write_text(version)
    return runner


class LocalRegistry:
    """A schema registry this process owns, with in-memory storage: ``start()``, ``stop()``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        version: str = APICURIO_VERSION,
        heap: str = "512m",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.version = version
        self.heap = heap
        self._process: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API, as clients take it."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "registry.log"

    def start(self, timeout: float = 120.0) -> None:
        runner = ensure_registry(self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the registry
        command = [
            "java",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.http.host=127.0.0.1",
            # In-memory H2 storage (the default), nothing kept between runs.
            "-Dapicurio.storage.kind=sql",
            "-Dapicurio.storage.sql.kind=h2",
            "-jar",
            str(runner),
        ]
        self._process = subprocess.Popen(
            command,
            cwd=self.data_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise LocalKafkaError(
                    f"the schema registry exited with {self._process.returncode}; "
                    f"see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(self.url + "/subjects", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise LocalKafkaError(
            f"the schema registry did not start within {timeout:.0f}s; see {self.log_path}"
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

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
