"""Fetch Apicurio Registry with Maven, once, and run it on loopback."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from service.localkafka.broker import free_port
from service.localkafka.jars import LocalKafkaError, cache_dir
from service.localkafka.process import ChildProcess, announce_fetch, require_tools, run_maven

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
    require_tools("the local schema registry")
    if not quiet:
        announce_fetch(f"Apicurio Registry {version}", home)
    # The distribution archive alone: its parent POM is not on Maven Central, so the
    # artifact is copied by coordinates rather than resolved as a dependency.
    artifact = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
    with tempfile.TemporaryDirectory(prefix="livetables-mvn-") as work:
        staging = Path(work, "dist")
        run_maven(
            ["dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={staging}"],
            work,
            f"Apicurio Registry {version}",
        )
        archives = list(staging.glob("*.tar.gz")) if staging.exists() else []
        if len(archives) != 1:
            raise LocalKafkaError(f"Maven left {len(archives)} registry archives in {staging}")
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
        self._child = ChildProcess("the schema registry", self.log_path)

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
        self._child.launch(command, cwd=self.data_dir)

        def answers() -> bool:
            try:
                with urllib.request.urlopen(self.url + "/subjects", timeout=2) as response:
                    return response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        self._child.wait_until(answers, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        self._child.stop(timeout)

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
