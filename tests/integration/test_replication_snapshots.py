"""/replicate snapshots: taken off the IOLoop, shared, held once, and within the buffer cap."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

from tornado.websocket import websocket_connect

from tests.helpers import json_bytes, produce, wait_until
from tests.integration.test_replication import Replica
from tests.security_helpers import ServiceProcess, poll, raw_websocket

SCHEMA = {"id": "string", "seq": "integer", "px": "float", "note": "string"}


def _records(n: int):
    for i in range(n):
        key = f"k{i}"
        yield (
            i % 2,
            key.encode(),
            json_bytes({"id": key, "seq": i, "px": i / 7, "note": "x" * 40}),
        )


def _config(kafka, topic: str, **server) -> dict:
    return {
        "kafka": {"bootstrap_servers": kafka.bootstrap},
        "server": server,
        "tables": {"t": {"topic": topic, "schema": SCHEMA, "index": "id"}},
    }


def _silent_replica(port: int) -> socket.socket:
    """A /replicate handshake by hand; the socket is then never read again."""
    return raw_websocket(port, "/replicate/t", receive_buffer=4096)


def test_replicas_that_never_read_hold_one_copy_of_the_snapshot(kafka, topic_name, tmp_path):
    rows, replicas = 150_000, 100
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, _records(rows))
    service = ServiceProcess(_config(kafka, topic_name), tmp_path)
    service.start()
    sockets: list[socket.socket] = []
    try:
        wait_until(service.ready, timeout=120, what="catch-up")

        async def snapshot_size() -> int:
            replica = await websocket_connect(
                service.ws_url.replace("/websocket", "/replicate/t"), max_message_size=2**30
            )
            await replica.read_message()  # hello
            size = len(await replica.read_message())
            replica.close()
            return size

        size = asyncio.run(snapshot_size())
        sent_before = service.metric("livetables_websocket_bytes_sent_total")
        baseline = service.rss_bytes()
        peak = baseline
        for _ in range(replicas):
            sockets.append(_silent_replica(service.port))
            assert service.get("/healthz")[0] == 200

        def all_queued() -> bool:
            nonlocal peak
            peak = max(peak, service.rss_bytes())
            sent = service.metric("livetables_websocket_bytes_sent_total") - sent_before
            return sent >= replicas * size

        wait_until(all_queued, timeout=60, what="every snapshot handed to its socket")
        growth = peak - baseline
        print(
            f"{replicas} silent replicas of a {size / 2**20:.1f} MiB snapshot: RSS "
            f"+{growth / 2**20:.0f} MiB (one copy each would be {replicas * size / 2**20:.0f} MiB)"
        )
        # One copy per replica was the old cost; allow a few copies for the engine's own work.
        assert growth < replicas * size / 10, f"RSS grew by {growth / 2**20:.0f} MiB"
        assert service.alive()
    finally:
        for sock in sockets:
            sock.close()
        service.stop()


def test_new_replicas_of_an_unchanged_table_share_one_snapshot(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, _records(5000))
    service = run_service(_config(kafka, topic_name))
    wait_until(service.ready, what="catch-up")
    replicator = service.service.replicator
    taken = replicator.snapshots_taken
    url = f"ws://127.0.0.1:{service.service.port}/replicate/t"

    async def crowd() -> list[Replica]:
        stop = asyncio.Event()
        replicas = [Replica() for _ in range(30)]
        tasks = [asyncio.ensure_future(r.run(url, stop)) for r in replicas]
        await poll(lambda: all(r.table is not None for r in replicas), what="30 snapshots")
        stop.set()
        await asyncio.gather(*tasks)
        return replicas

    replicas = asyncio.run(crowd())
    assert replicator.snapshots_taken - taken == 1
    assert all(r.table.size() == 5000 for r in replicas)


def test_a_replica_joining_during_a_table_update_does_not_block_the_ioloop(
    kafka, topic_name, run_service
):
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, _records(1000))
    service = run_service(_config(kafka, topic_name))
    wait_until(service.ready, what="catch-up")
    url = f"ws://127.0.0.1:{service.service.port}/replicate/t"
    # The applier holds this lock for the whole of a table update; holding it here stands
    # for an update that takes long (a big batch on a table with many views).
    table_lock = service.service.replicator._locks["t"]
    released = threading.Event()

    def long_update() -> None:
        with table_lock:
            released.wait(60)

    updater = threading.Thread(target=long_update, daemon=True)
    updater.start()
    wait_until(table_lock.locked, what="the update under way")
    replica = Replica()
    stop = threading.Event()

    async def join() -> None:
        done = asyncio.Event()
        task = asyncio.ensure_future(replica.run(url, done))
        await poll(lambda: replica.hello is not None, what="the hello")
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await poll(lambda: replica.table is not None, what="the snapshot after the update")
        done.set()
        await task

    joiner = threading.Thread(target=lambda: asyncio.run(join()), daemon=True)
    joiner.start()
    try:
        wait_until(lambda: replica.hello is not None, what="the replica connected")
        # The replica waits for its snapshot; everything else is served meanwhile.
        for _ in range(5):
            assert service.get("/healthz")[0] == 200
            assert service.get("/api/tables")[1][0]["name"] == "t"
        assert replica.table is None
    finally:
        released.set()
        stop.set()
        joiner.join(30)
        updater.join(5)
    assert replica.table is not None and replica.table.size() == 1000


def test_a_snapshot_larger_than_its_allowance_closes_the_replica_with_a_reason(
    kafka, topic_name, run_service
):
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, _records(20_000))
    service = run_service(_config(kafka, topic_name, max_snapshot_bytes=256 * 1024))
    wait_until(service.ready, what="catch-up")

    async def attempt() -> tuple[int | None, str | None, dict]:
        replica = await websocket_connect(f"ws://127.0.0.1:{service.service.port}/replicate/t")
        hello = json.loads(await replica.read_message())
        assert await replica.read_message() is None
        return replica.close_code, replica.close_reason, hello

    code, reason, hello = asyncio.run(attempt())
    assert hello["table"] == "t"
    assert code == 1009 and "server.max_snapshot_bytes" in reason, (code, reason)
    wait_until(
        lambda: (
            service.metric("livetables_websocket_disconnects_total", reason="snapshot_too_large")
            == 1
        ),
        what="the disconnect counted",
    )
    assert service.service.replicator.subscriber_count("t") == 0
