"""``kill -9`` while records flow and snapshots are written: the restart is still exact.

``livetables serve`` runs as a process of its own with a snapshot every second,
while a producer sends a known stream (upserts, tombstones, re-created keys;
appends). The process is killed with SIGKILL at random moments (mid-snapshot,
mid-batch, mid-restore: wherever it happens to be) and started again. Once the
stream is over and consumed, the tables must hold exactly what a replay would,
read through the websocket like any client.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
import sys
import threading
import time

import yaml
from confluent_kafka import Producer as KafkaProducer

from service.localkafka.broker import free_port
from service.remote import connect
from service.snapshots import files
from tests.helpers import http_get, json_bytes, wait_until

LIVETABLES = [sys.executable, "-m", "service.cli", "--log-level", "INFO"]
QUOTES = {"sym": "string", "px": "float", "n": "integer"}
TRADES = {"id": "string", "n": "integer"}
LIMIT = 500
KILLS = 3


class Stream:
    """A deterministic stream for two topics, and the tables' expected contents after it."""

    def __init__(self, seed: int, chunks: int) -> None:
        rng = random.Random(seed)
        self.chunks: list[tuple[list, list]] = []
        self.quotes: dict[str, dict] = {}
        self.trades: list[str] = []
        n = 0
        for _ in range(chunks):
            quotes = []
            for _ in range(150):
                key = f"k{rng.randrange(400)}"
                partition = int(key[1:]) % 3
                n += 1
                if key in self.quotes and rng.random() < 0.3:
                    quotes.append((partition, key.encode(), None))
                    del self.quotes[key]
                else:
                    row = {"sym": key, "px": n / 8, "n": n}
                    quotes.append((partition, key.encode(), json_bytes(row)))
                    self.quotes[key] = row
            ids = [f"t{len(self.trades) + i}" for i in range(100)]
            self.trades += ids
            trades = [(0, None, json_bytes({"id": i, "n": int(i[1:])})) for i in ids]
            self.chunks.append((quotes, trades))


class Producer(threading.Thread):
    def __init__(self, bootstrap: str, quotes: str, trades: str, stream: Stream) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.quotes, self.trades, self.stream = bootstrap, quotes, trades, stream
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(
                {"bootstrap.servers": self.bootstrap, "linger.ms": 5, "enable.idempotence": True}
            )
            for quotes, trades in self.stream.chunks:
                for topic, records in ((self.quotes, quotes), (self.trades, trades)):
                    for partition, key, value in records:
                        producer.produce(topic, value, key, partition=partition)
                assert producer.flush(30) == 0, "records not delivered"
                time.sleep(0.04)
        except BaseException as exc:  # reported by the test
            self.error = exc


class Served:
    """``livetables serve`` as a child process."""

    def __init__(self, config_path, port: int, log_path) -> None:
        self.config_path, self.port, self.log_path = config_path, port, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*LIVETABLES, "serve", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def get(self, path: str):
        return http_get(f"http://127.0.0.1:{self.port}{path}")

    def ready(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.output()
        return self.get("/readyz")[0] == 200

    def rows(self) -> dict[str, int]:
        status, tables = self.get("/api/tables")
        return {t["name"]: t["rows"] for t in tables} if status == 200 else {}

    def started(self, table: str) -> list[str]:
        _status, text = self.get("/metrics")
        pattern = rf'^livetables_table_start\{{kind="([^"]+)",table="{table}"\}} 1\.0$'
        return re.findall(pattern, text or "", re.MULTILINE)

    def columns(self, table: str) -> dict[str, list]:
        async def read() -> dict[str, list]:
            remote = await connect(f"ws://127.0.0.1:{self.port}/websocket")
            try:
                view = await (await remote.client.open_table(table)).view()
                return await view.to_columns()
            finally:
                remote.close()

        return asyncio.run(read())

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def test_kill_9_at_random_moments_loses_and_repeats_nothing(kafka, topic_name, tmp_path):
    quotes_topic, trades_topic = f"{topic_name}-q", f"{topic_name}-t"
    kafka.create_topic(quotes_topic, partitions=3)
    kafka.create_topic(trades_topic, partitions=1)
    snapshots = tmp_path / "snapshots"
    config = {
        "kafka": {"bootstrap_servers": kafka.bootstrap},
        "server": {"host": "127.0.0.1", "port": free_port()},
        "snapshots": {"dir": str(snapshots), "interval": "1s"},
        "tables": {
            "quotes": {"topic": quotes_topic, "schema": QUOTES, "index": "sym"},
            "trades": {"topic": trades_topic, "schema": TRADES},
            "recent": {"topic": trades_topic, "schema": TRADES, "limit": LIMIT},
        },
    }
    config_path = tmp_path / "livetables.yaml"
    config_path.write_text(yaml.safe_dump(config))
    served = Served(config_path, config["server"]["port"], tmp_path / "serve.log")
    stream = Stream(seed=5, chunks=120)
    producer = Producer(kafka.bootstrap, quotes_topic, trades_topic, stream)
    rng = random.Random(17)

    served.start()
    try:
        wait_until(served.ready, timeout=60, what="first start")
        producer.start()
        for kill in range(KILLS):
            # At least one snapshot of every table exists before the first kill.
            wait_until(
                lambda: all(files.candidates(snapshots, t) for t in config["tables"]),
                what="snapshots written",
            )
            time.sleep(rng.uniform(0.2, 2.5))
            served.kill()
            served.start()
            if kill < KILLS - 1:
                continue
            wait_until(served.ready, timeout=60, what="ready after the last kill")
            for table in config["tables"]:
                assert served.started(table) == ["snapshot"], (table, served.output())
        producer.join(120)
        assert not producer.is_alive() and producer.error is None, producer.error
        wait_until(served.ready, timeout=60, what="ready")
        expected = {"quotes": len(stream.quotes), "trades": len(stream.trades), "recent": LIMIT}
        wait_until(lambda: served.rows() == expected, timeout=60, what=f"rows {expected}")

        quotes = served.columns("quotes")
        got = {
            quotes["sym"][i]: {c: quotes[c][i] for c in QUOTES} for i in range(len(quotes["sym"]))
        }
        assert got == stream.quotes
        trades = served.columns("trades")["id"]
        assert len(trades) == len(stream.trades) and set(trades) == set(stream.trades)
        assert served.columns("recent")["id"] == stream.trades[-LIMIT:]
    finally:
        code = served.stop()
    assert code == 0, served.output()
