"""Update latency under load, as clients see it.

A live producer (in the benchmark's process) sends records stamped with their send
time (``t``, epoch ms) at a fixed rate. N clients watch one table from a process of
their own (``bench/clients.py``), so they share no interpreter with the producer and
the service shares none with them; ``t`` and each arrival come from the same machine
clock:

* replicated: livetables' ``/replicate/{table}`` feed (one shared server-side
  path, the same bytes to every client);
* own view: stock Perspective clients over ``/websocket``, each with its own
  server View and ``on_update(mode="row")``, the pattern Perspective's docs show.

Every client receives every update; ``MEASURED`` of them decode each frame and
record ``arrival - t`` per record, so the clients' own CPU stays small.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from bench.accounting import process_cpu
from bench.records import live_value

MEASURED = 20
LIVE_SCHEMA = {"i": "integer", "s": "string", "p": "float", "q": "integer", "t": "datetime"}


class LiveProducer:
    """Produces ``rate`` records/s in 10 ms ticks until stopped (``make_value(seq, rng)``)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        rate: int,
        make_value: Callable[[int, random.Random], bytes] = live_value,
    ) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
        self.topic, self.rate, self.make_value = topic, rate, make_value
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng, seq, tick = random.Random(5), 0, 0.01
        next_at = time.perf_counter()
        while not self._stop.is_set():
            for _ in range(int(self.rate * tick)):
                self.producer.produce(self.topic, self.make_value(seq, rng))
                seq += 1
            self.producer.poll(0)
            next_at += tick
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    def __enter__(self) -> LiveProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.producer.flush(10)


class ClientProcess:
    """``python -m bench.clients``: the audience in a process of its own (a context manager)."""

    def __init__(self, url: str, table: str, count: int, own_view: bool, measure: int = MEASURED):
        self.command = [
            sys.executable,
            "-m",
            "bench.clients",
            "--url",
            url,
            "--table",
            table,
            "--count",
            str(count),
            "--measure",
            str(min(measure, count)),
        ]
        if own_view:
            self.command.append("--own-view")
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ClientProcess:
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "connected":
            self.process.kill()
            raise RuntimeError(f"the client process did not connect its clients: {line!r}")
        return self

    def command_line(self, text: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def record(self) -> None:
        self.command_line("record")

    def join(self, count: int) -> None:
        self.command_line(f"join {count}")

    def results(self) -> dict:
        """Stop the clients; their latency percentiles (ms) and what else they counted."""
        assert self.process is not None and self.process.stdout is not None
        self.command_line("stop")
        line = self.process.stdout.readline()
        self.process.wait(30)
        return json.loads(line)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return process_cpu(self.process.pid)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
