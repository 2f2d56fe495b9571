"""Run a single-node KRaft broker (broker + controller in one JVM) on loopback."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import uuid
from pathlib import Path

from service.localkafka.jars import KAFKA_VERSION, LocalKafkaError, ensure_jars
from service.localkafka.process import ChildProcess

STORAGE_TOOL = "kafka.tools.StorageTool"
BROKER_MAIN = "kafka.Kafka"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalKafka:
    """A broker this process owns: ``start()``, ``stop()``, and ``start()`` again.

    Restarting keeps the ports and the data directory, so a restarted broker
    is the same broker to its clients (the tests use this to simulate an outage).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        version: str = KAFKA_VERSION,
        heap: str = "1g",
        quick_start: bool = True,
    ) -> None:
        """``quick_start`` trades the broker's peak speed for a start-up of a few seconds
        (client-compiler JIT only, serial GC): right for tests and the demo; the benchmarks
        turn it off so the broker is not what they measure."""
        self.data_dir = Path(data_dir)
        self.quick_start = quick_start
        self.port = port or free_port()
        self.controller_port = free_port()
        self.version = version
        self.heap = heap
        self._child = ChildProcess("the Kafka broker", self.log_path)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    def _properties(self) -> str:
        logs = self.data_dir / "logs"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.retention.hours": "24",
        }
        return "".join(f"{k}={v}\n" for k, v in lines.items())

    def _java(self, lib: Path, main: str, *args: str) -> list[str]:
        tuning = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"] if self.quick_start else []
        return [
            "java",
            f"-Xmx{self.heap}",
            "-Xms128m",
            *tuning,
            "-Djava.awt.headless=true",
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> None:
        """Start (formatting the storage on first start) and wait until it serves metadata."""
        lib = ensure_jars(self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(self._properties())
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = _cluster_id()
            result = subprocess.run(
                self._java(lib, STORAGE_TOOL, "format", "-t", cluster_id, "-c", str(config)),
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise LocalKafkaError(
                    f"formatting the Kafka storage failed: {result.stderr[-2000:]}"
                )
        self._child.launch(self._java(lib, BROKER_MAIN, str(config)))
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

        def serves_metadata() -> bool:
            try:
                return bool(admin.list_topics(timeout=2).brokers)
            except Exception:
                return False

        self._child.wait_until(serves_metadata, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        self._child.stop(timeout)

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._child.pid

    @property
    def running(self) -> bool:
        return self._child.running

    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, str] | None = None
    ) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])
        for future in futures.values():
            future.result(timeout=30)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cluster_id() -> str:
    """A random KRaft cluster id (base64url of 16 bytes) that cannot start with ``-``.

    The storage tool reads ``-t -abc...`` as another option and refuses to format.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
