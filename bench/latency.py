"""Update latency under load, as clients see it.

A live producer sends records stamped with their send time (``t``, epoch ms)
at a fixed rate. N clients watch one table:

* replicated: livetables' ``/replicate/{table}`` feed (one shared server-side
  path, the same bytes to every client);
* own view: stock Perspective clients over ``/websocket``, each with its own
  server View and ``on_update(mode="row")``, the pattern Perspective's docs show.

Every client receives every update; a sample of them (all, up to ``MEASURED``)
decodes each frame and records ``arrival - t`` per record, so the load
generator's own CPU does not dominate the machine it shares with the server.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from confluent_kafka import Producer
from tornado.websocket import websocket_connect

from bench.records import live_value
from service.remote import connect

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


def _latencies_ms(arrow: bytes, received_ms: float) -> np.ndarray:
    table = pa.ipc.open_stream(arrow).read_all()
    if "t" not in table.column_names or table.num_rows == 0:
        return np.empty(0)
    stamps = table.column("t").cast(pa.int64()).to_numpy(zero_copy_only=False)
    return received_ms - stamps


class Clients:
    """N clients on an event loop of their own thread."""

    def __init__(self, url: str, table: str, count: int, own_view: bool) -> None:
        self.url, self.table, self.count, self.own_view = url, table, count, own_view
        self.samples: list[np.ndarray] = []
        self.frames = 0
        self.recording = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sockets: list = []
        self.pumps: list[asyncio.Future] = []

    def _record(self, arrow: bytes, measure: bool) -> None:
        self.frames += 1
        if measure and self.recording:
            self.samples.append(_latencies_ms(arrow, time.time() * 1000))

    async def _replica(self, measure: bool) -> None:
        def on_message(message: str | bytes | None) -> None:
            if isinstance(message, bytes) and message[:1] == b"U":
                self._record(message[1:], measure)

        self.sockets.append(
            await websocket_connect(
                f"{self.url}/replicate/{self.table}", on_message_callback=on_message
            )
        )

    async def _own_view(self, measure: bool) -> None:
        remote = await connect(f"{self.url}/websocket")
        self.sockets.append(remote.socket)
        self.pumps.append(remote.pump)
        client = remote.client
        table = await client.open_table(self.table)
        view = await table.view()

        def on_update(_port: int, delta: bytes | None = None) -> None:
            if delta:
                self._record(delta, measure)

        await view.on_update(on_update, mode="row")

    async def _connect_all(self) -> None:
        for i in range(self.count):
            measure = i < MEASURED
            await (self._own_view(measure) if self.own_view else self._replica(measure))

    def __enter__(self) -> Clients:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._connect_all(), self.loop).result(300)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            for socket in self.sockets:
                socket.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def percentiles(self) -> dict:
        if not self.samples:
            return {"p50_ms": float("nan"), "p99_ms": float("nan"), "records": 0}
        values = np.concatenate(self.samples)
        return {
            "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)),
            "records": len(values),
        }
