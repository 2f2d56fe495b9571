"""Fetch the Kafka broker's jars with Maven, once, into a cache directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "4.1.1"


class LocalKafkaError(RuntimeError):
    """The local broker cannot be fetched or started; the message says what to do."""


def cache_dir() -> Path:
    base = os.environ.get("LIVETABLES_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "livetables"
    )
    return Path(base)


def ensure_jars(version: str = KAFKA_VERSION, quiet: bool = False) -> Path:
    """The directory holding the broker's jars, fetched with Maven on first use."""
    lib = cache_dir() / f"kafka-{version}" / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise LocalKafkaError(
                f"the local Kafka broker needs `{tool}` on PATH (Java 17+ and Maven); "
                "install them, or point livetables at an existing Kafka with --bootstrap"
            )
    if not quiet:
        print(
            f"livetables: fetching Apache Kafka {version} jars with Maven (once) into {lib}",
            file=sys.stderr,
            flush=True,
        )
    pom = resources.files("service.localkafka").joinpath("pom.xml").read_text()
    with tempfile.TemporaryDirectory(prefix="livetables-mvn-") as work:
        Path(work, "pom.xml").write_text(pom)
        staging = Path(work, "lib")
        command = [
            "mvn",
            "-B",
            "-q",
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise LocalKafkaError(f"fetching the Kafka jars with Maven failed:\n{tail}")
        lib.parent.mkdir(parents=True, exist_ok=True)
        if lib.exists():
            shutil.rmtree(lib)
        shutil.copytree(staging, lib)
    marker.write_text(version)
    return lib
