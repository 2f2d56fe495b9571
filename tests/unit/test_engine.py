"""Engine workers: per-session order, sessions taking turns, close after the request in flight."""

from __future__ import annotations

import threading

import pyarrow as pa

from connectors.base import DecodedBatch
from service.config import parse_config
from service.engine import EngineWorkers, SerialQueue, TableGate
from service.security.ratelimit import TokenBucket
from service.tables import TableHost
from tests.helpers import wait_until


def test_a_session_s_tasks_run_in_order_one_at_a_time():
    workers = EngineWorkers(4)
    queue = SerialQueue(workers)
    done: list[int] = []
    running = 0
    overlap = False
    lock = threading.Lock()

    def task(i: int) -> None:
        nonlocal running, overlap
        with lock:
            running += 1
            overlap = overlap or running > 1
        done.append(i)
        with lock:
            running -= 1

    for i in range(500):
        queue.submit(lambda i=i: task(i))
    assert workers.drain(30)
    assert done == list(range(500)) and not overlap and len(queue) == 0
    workers.shutdown()


def test_a_busy_session_does_not_hold_back_another():
    workers = EngineWorkers(2)
    busy, other = SerialQueue(workers), SerialQueue(workers)
    release = threading.Event()
    served = threading.Event()
    busy.submit(lambda: release.wait(30))  # a long request on one worker
    for _ in range(50):
        busy.submit(lambda: None)
    other.submit(served.set)
    wait_until(served.is_set, timeout=10, what="the other session served")
    assert len(busy) == 51
    release.set()
    assert workers.drain(30)
    workers.shutdown()


def test_close_drops_waiting_tasks_and_runs_last():
    workers = EngineWorkers(2)
    queue = SerialQueue(workers)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    queue.submit(lambda: (started.set(), release.wait(30), ran.append("in flight")))
    assert started.wait(10)
    queue.submit(lambda: ran.append("waiting"))
    queue.close(lambda: ran.append("close"))
    queue.submit(lambda: ran.append("after close"))
    release.set()
    assert workers.drain(30)
    assert ran == ["in flight", "close"]
    workers.shutdown()


def test_a_failing_task_does_not_stop_the_queue():
    workers = EngineWorkers(1)
    queue = SerialQueue(workers)
    ran: list[int] = []
    queue.submit(lambda: 1 / 0)
    queue.submit(lambda: ran.append(1))
    assert workers.drain(30)
    assert ran == [1]
    workers.shutdown()


def test_the_token_bucket_allows_a_burst_then_the_rate():
    now = [100.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.25  # 2.5 tokens back
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 60  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 5


def test_readers_back_to_back_never_keep_an_update_out_nor_updates_the_readers():
    gate = TableGate()
    stop = threading.Event()
    reads = [0, 0]

    def reader(i: int) -> None:
        while not stop.is_set():
            with gate.reading():
                reads[i] += 1
                stop.wait(0.001)  # overlapping reads: there is always one inside

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: min(reads) > 10, what="both readers reading")
    written: list[int] = []
    between: list[bool] = []

    def writer() -> None:
        for _ in range(20):
            before = list(reads)
            with gate.writing():
                written.append(1)
            # The readers that waited for this write go in before the next one.
            with gate.writing():
                between.append(reads != before)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_until(lambda: len(between) == 20, timeout=20, what="20 writes among the readers")
    stop.set()
    for t in [*threads, thread]:
        t.join(10)
    assert len(written) == 20 and all(between)


READERS = 4


def test_updates_of_a_real_table_get_through_clients_reading_it_back_to_back():
    """perspective 4.3.0's table lock favours readers: without the gate, this update waited
    for as long as the two readers went on (minutes, measured)."""
    rows = 300_000
    schema = {"id": "string", "sym": "string", "px": "float", "qty": "integer", "note": "string"}
    config = {"tables": {"t": {"topic": "t", "schema": schema, "index": "id"}}}
    host = TableHost(parse_config(config))
    table = pa.table(
        {
            "id": [f"k{i}" for i in range(rows)],
            "sym": [f"S{i % 13}" for i in range(rows)],
            "px": [i / 7 for i in range(rows)],
            "qty": list(range(rows)),
            "note": ["x" * 40] * rows,
        }
    )
    host.apply("t", DecodedBatch(rows=table))
    stop = threading.Event()
    reads = [0] * READERS

    def reader(i: int) -> None:
        with host.writing("t"):  # as a client's new view does: it takes the write lock
            view = host.tables["t"].view()
        while not stop.is_set():
            with host.reading("t"):
                view.to_arrow(start_row=0, end_row=200_000)
            reads[i] += 1
        with host.writing("t"):
            view.delete()

    readers = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READERS)]
    for thread in readers:
        thread.start()
    wait_until(lambda: min(reads) > 2, what="both readers reading")
    applied = threading.Event()
    updater = threading.Thread(
        target=lambda: (host.apply("t", DecodedBatch(rows=table.slice(0, 1000))), applied.set()),
        daemon=True,
    )
    updater.start()
    try:
        wait_until(applied.is_set, timeout=30, what="the update between the reads")
    finally:
        stop.set()
        for thread in readers:
            thread.join(30)
    assert host.size("t") == rows
    host.close()
