"""Fetch the Kafka broker's jars with Maven, once, into a cache directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from service.localkafka.process import LocalKafkaError, announce_fetch, require_tools, run_maven

__all__ = ["KAFKA_VERSION", "LocalKafkaError", "cache_dir", "ensure_jars"]

KAFKA_VERSION = "4.1.1"


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
    require_tools(
        "the local Kafka broker",
        "; install them, or point livetables at an existing Kafka with --bootstrap",
    )
    if not quiet:
        announce_fetch(f"Apache Kafka {version} jars", lib)
    pom = resources.files("service.localkafka").joinpath("pom.xml").read_text()
    with tempfile.TemporaryDirectory(prefix="livetables-mvn-") as work:
        Path(work, "pom.xml").write_text(pom)
        staging = Path(work, "lib")
        run_maven(
            [
                f"-Dkafka.version={version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            work,
            "the Kafka jars",
        )
        lib.parent.mkdir(parents=True, exist_ok=True)
        if lib.exists():
            shutil.rmtree(lib)
        shutil.copytree(staging, lib)
    marker.write_text(version)
    return lib
