"""/replicate: every replica ends equal to the server table, however late it joined."""

from __future__ import annotations

import asyncio
import json
import random
import threading

import perspective
from tornado.websocket import websocket_connect

from tests.helpers import json_bytes, produce, wait_until

SCHEMA = {"id": "string", "seq": "integer", "px": "float"}


class Replica:
    """A Python stand-in for the browser's worker table, fed by /replicate/{table}."""

    def __init__(self) -> None:
        self.client = perspective.Server().new_local_client()
        self.table = None
        self.hello: dict | None = None
        self.frames = 0

    async def run(self, url: str, stop: asyncio.Event) -> None:
        def on_message(message: str | bytes | None) -> None:
            if message is not None:
                self.apply(message)

        socket = await websocket_connect(url, on_message_callback=on_message)
        await stop.wait()
        socket.close()

    def apply(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.hello = json.loads(message)
            return
        kind, body = message[:1], message[1:]
        self.frames += 1
        if kind == b"S":
            options = {k: self.hello[k] for k in ("index", "limit") if self.hello[k]}
            self.table = self.client.table(self.hello["schema"], **options)
            self.table.update(body)
        elif kind == b"U":
            self.table.update(body)
        elif kind == b"R":
            self.table.remove(json.loads(body))

    def rows(self) -> dict:
        view = self.table.view()
        try:
            columns = view.to_columns()
        finally:
            view.delete()
        return {
            columns["id"][i]: (columns["seq"][i], columns["px"][i])
            for i in range(len(columns["id"]))
        }


def _records(start: int, stop: int, rng: random.Random):
    for seq in range(start, stop):
        key = f"k{rng.randrange(300)}"
        if rng.random() < 0.2:
            yield (hash(key) % 3, key.encode(), None)
        else:
            yield (hash(key) % 3, key.encode(), json_bytes({"id": key, "seq": seq, "px": seq / 7}))


def test_replicas_joining_mid_stream_end_equal_to_the_server(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=3)
    rng = random.Random(11)
    produce(kafka.bootstrap, topic_name, _records(0, 3000, rng))
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {"t": {"topic": topic_name, "schema": SCHEMA, "index": "id"}},
        }
    )
    wait_until(service.ready, what="catch-up")
    url = f"ws://127.0.0.1:{service.service.port}/replicate/t"
    replicas = [Replica() for _ in range(4)]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    futures = []
    try:
        # Replicas join before, during and after a stream of upserts and tombstones.
        futures.append(asyncio.run_coroutine_threadsafe(replicas[0].run(url, stop), loop))
        produce(kafka.bootstrap, topic_name, _records(3000, 6000, rng))
        futures.append(asyncio.run_coroutine_threadsafe(replicas[1].run(url, stop), loop))
        futures.append(asyncio.run_coroutine_threadsafe(replicas[2].run(url, stop), loop))
        produce(kafka.bootstrap, topic_name, _records(6000, 9000, rng))
        futures.append(asyncio.run_coroutine_threadsafe(replicas[3].run(url, stop), loop))
        wait_until(
            lambda: service.metric("livetables_records_consumed_total", table="t") == 9000,
            what="all records consumed",
        )
        columns = service.columns("t")
        expected = {
            columns["id"][i]: (columns["seq"][i], columns["px"][i])
            for i in range(len(columns["id"]))
        }
        for i, replica in enumerate(replicas):
            wait_until(
                lambda r=replica: r.table is not None and r.rows() == expected,
                what=f"replica {i} equal",
            )
        assert service.service.replicator.subscriber_count("t") == 4
    finally:
        loop.call_soon_threadsafe(stop.set)
        for future in futures:
            future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    wait_until(lambda: service.service.replicator.subscriber_count("t") == 0, what="unsubscribed")


def test_replicating_an_unknown_table_is_refused(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=1)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {"t": {"topic": topic_name, "schema": SCHEMA}},
        }
    )

    async def attempt() -> tuple[int | None, str | None]:
        socket = await websocket_connect(f"ws://127.0.0.1:{service.service.port}/replicate/nope")
        assert await socket.read_message() is None
        return socket.close_code, socket.close_reason

    code, reason = asyncio.run(attempt())
    assert code == 4404 and "nope" in reason
    assert (
        service.metric("livetables_websocket_rejected_requests_total", reason="unknown_table") == 1
    )
