"""One hostile session cannot freeze the service: its heavy requests are refused or run aside.

Each request below froze the whole service for minutes on a 300k-row table when
engine calls ran on the IOLoop without limits (split_by + get_min_max took the
process from 1 GB to 8 GB; 40 string ``concat`` expressions ~150 s; a group_by
on two unique columns split by symbol ~220 s). Now each is refused with an error
naming its limit, or runs on an engine worker, while ``/healthz`` answers and a
replicated viewer of the same table keeps receiving its updates. The service runs
in a process of its own, so an engine crash is a failed assertion here.
"""

from __future__ import annotations

import asyncio
import threading
import time

import perspective
import pyarrow as pa
from confluent_kafka import Producer
from tornado.websocket import websocket_connect

from service.remote import connect
from tests.helpers import json_bytes, produce
from tests.security_helpers import ServiceProcess, poll

ROWS = 300_000
SCHEMA = {"id": "string", "seq": "integer", "sym": "string", "px": "float", "note": "string"}


def _record(i: int) -> tuple[int, bytes, bytes]:
    key = f"k{i % ROWS}"
    record = {"id": key, "seq": i, "sym": f"S{i % 13}", "px": i / 7, "note": "x" * 40}
    return (i % 2, key.encode(), json_bytes(record))


class SteadyProducer:
    """Updates rows of the table at a steady pace until stopped; ``last`` is the newest seq."""

    def __init__(self, bootstrap: str, topic: str, per_second: int) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic = topic
        self.per_second = per_second
        self.last = ROWS - 1
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            due = ROWS + int((time.monotonic() - started) * self.per_second)
            while self.last < due:
                partition, key, value = _record(self.last + 1)
                self.producer.produce(self.topic, value=value, key=key, partition=partition)
                self.last += 1
            self.producer.poll(0)
            self._stop.wait(0.02)  # pacing, not synchronisation
        self.producer.flush(30)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(60)


class ReplicaWatcher:
    """A /replicate client that only notes the newest ``seq`` each update carries."""

    def __init__(self) -> None:
        self.snapshot_rows = 0
        self.newest = -1
        self.updates = 0

    def on_message(self, message: str | bytes | None) -> None:
        if not isinstance(message, bytes):
            return
        kind, body = message[:1], message[1:]
        if kind not in (b"S", b"U"):
            return
        rows = pa.ipc.open_stream(body).read_all()
        if kind == b"S":
            self.snapshot_rows = rows.num_rows
        else:
            self.updates += 1
        if rows.num_rows:
            self.newest = max(self.newest, rows.column("seq").to_numpy().max())


async def _refusal(attempt) -> str:
    try:
        result = await attempt
    except perspective.PerspectiveError as exc:
        return str(exc)
    raise AssertionError(f"not refused: {result!r}"[:200])


async def _serialise_back_to_back(url: str, stop: asyncio.Event) -> int:
    """Allowed reads (500k cells each), always a few waiting: the engine's table lock
    favours readers, so two sessions doing this kept every update of the table out."""
    remote = await connect(url)
    view = await (await remote.client.open_table("ticks")).view()
    reads = 0
    while not stop.is_set():
        await asyncio.gather(*(view.to_arrow(start_row=0, end_row=100_000) for _ in range(4)))
        reads += 4
    remote.close()
    return reads


async def _hostile(url: str, heavy: list[float]) -> dict[str, list[str]]:
    """Every request that froze the service, from one session; the errors it got back.

    ``heavy`` gets the start and end (monotonic) of an allowed request that takes a while.
    """
    remote = await connect(url)
    table = await remote.client.open_table("ticks")
    errors = []
    errors.append(await _refusal(table.view(split_by=["sym"])))
    concat = {f"c{i}": f'concat("id", \'{i}\', "note")' for i in range(40)}
    errors.append(await _refusal(table.view(expressions=concat)))
    few = dict(list(concat.items())[:5])
    errors.append(await _refusal(table.view(expressions=few)))
    errors.append(await _refusal(table.view(group_by=["note", "id"], split_by=["sym"])))
    errors.append(await _refusal(table.view(group_by=["id"])))
    # Allowed and heavy enough (a flat view of 300k rows): built on a worker.
    flat = await table.view()
    errors.append(await _refusal(flat.to_arrow()))
    errors.append(await _refusal(flat.to_csv()))
    page = await flat.to_arrow(start_row=0, end_row=1000)
    assert page
    # Allowed, and seconds of engine work over 300k rows: the IOLoop serves others meanwhile,
    # and the requests this session sends meanwhile wait for it, up to the cap.
    heavy.append(time.monotonic())
    grouped = asyncio.ensure_future(table.view(group_by=["sym"], split_by=["sym"]))
    waiting = await asyncio.gather(*(table.size() for _ in range(40)), return_exceptions=True)
    await (await grouped).get_min_max("px")
    heavy.append(time.monotonic())
    # A burst far past the request rate: the excess is refused at once.
    burst = await asyncio.gather(
        *(flat.to_arrow(start_row=0, end_row=10) for _ in range(600)), return_exceptions=True
    )
    remote.close()
    return {
        "refused": errors,
        "waiting": [str(e) for e in waiting if isinstance(e, Exception)],
        "served_waiting": [str(size) for size in waiting if size == ROWS],
        "burst": [str(e) for e in burst if isinstance(e, Exception)],
    }


def test_a_hostile_session_neither_freezes_health_nor_a_replicated_viewer(
    kafka, topic_name, tmp_path
):
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, (_record(i) for i in range(ROWS)))
    service = ServiceProcess(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "server": {"max_rejected_requests": 100_000, "max_pending_requests": 16},
            "tables": {"ticks": {"topic": topic_name, "schema": SCHEMA, "index": "id"}},
        },
        tmp_path,
    )
    service.start()
    producer = SteadyProducer(kafka.bootstrap, topic_name, per_second=500)
    try:
        assert asyncio.run(poll(service.ready, timeout=120, what="300k rows applied"))

        async def scenario() -> tuple[list[str], list[float], ReplicaWatcher, int]:
            watcher = ReplicaWatcher()
            replica = await websocket_connect(
                service.ws_url.replace("/websocket", "/replicate/ticks"),
                on_message_callback=watcher.on_message,
                max_message_size=256 * 1024**2,
            )
            await poll(lambda: watcher.snapshot_rows == ROWS, timeout=60, what="the snapshot")
            producer.start()
            await poll(lambda: watcher.updates > 0, timeout=60, what="the first update")
            loop = asyncio.get_running_loop()
            health: list[tuple[float, float, int]] = []
            heavy: list[float] = []
            attacking = True

            def probe_health() -> None:
                # /healthz from a thread of its own: when each was asked and answered, how.
                while attacking:
                    started = time.monotonic()
                    status, _ = service.get("/healthz")
                    health.append((started, time.monotonic(), status))
                    time.sleep(0.05)  # pacing, not synchronisation

            prober = loop.run_in_executor(None, probe_health)
            attack = asyncio.ensure_future(_hostile(service.ws_url, heavy))
            errors = await asyncio.wait_for(attack, 300)
            # Updates produced after the attack reach the replicated viewer.
            after = producer.last
            await poll(lambda: watcher.newest >= after, timeout=60, what="updates after the attack")
            attacking = False
            await prober
            replica.close()
            return errors, health, heavy, watcher, after

        outcome, health, heavy, watcher, after = asyncio.run(scenario())
        errors = outcome["refused"]
        slowest = max(end - start for start, end, _ in health)
        during = [h for h in health if heavy[0] < h[0] and h[1] < heavy[1]]
        print(
            f"hostile session: {sum(map(len, outcome.values()))} refusals; /healthz answered "
            f"{len(health)} times "
            f"during the attack, slowest {slowest:.2f}s, {len(during)} times within the "
            f"{heavy[1] - heavy[0]:.1f}s of an allowed heavy request; replica at seq "
            f"{watcher.newest} (attack ended at {after}) after {watcher.updates} updates"
        )
        assert health and all(status == 200 for _, _, status in health), "/healthz failed"
        assert during, "/healthz did not answer while the engine worked for a client"
        assert "server.max_view_cells" in errors[0] and "split_by ['sym']" in errors[0]
        assert "server.max_expressions_per_view (10)" in errors[1]
        assert "server.max_view_cells" in errors[2] and "5 expressions" in errors[2]
        assert "server.max_view_cells" in errors[3] and "server.max_view_cells" in errors[4]
        assert "server.max_serialized_cells" in errors[5] and "view_to_arrow" in errors[5]
        assert "view_to_csv" in errors[6]
        rate = [e for e in outcome["burst"] if "server.max_requests_per_second" in e]
        queue = [e for e in outcome["burst"] if "server.max_pending_requests" in e]
        assert rate and len(rate) + len(queue) == len(outcome["burst"])
        # 16 wait behind the heavy view, the rest are refused; none is lost.
        assert outcome["waiting"] and all(
            "server.max_pending_requests" in e for e in outcome["waiting"]
        )
        assert len(outcome["waiting"]) + len(outcome["served_waiting"]) == 40
        rejected = "livetables_websocket_rejected_requests_total"
        assert service.metric(rejected, reason="view_too_large") == 4
        assert service.metric(rejected, reason="too_many_expressions") == 1
        assert service.metric(rejected, reason="serialization_too_large") == 2
        assert service.metric(rejected, reason="rate_limited") == len(rate)
        assert service.metric(rejected, reason="too_many_pending") == len(
            outcome["waiting"] + queue
        )
        assert service.alive(), service.output()
        assert service.metric("livetables_websocket_views") == 0
    finally:
        producer.stop()
        service.stop()
