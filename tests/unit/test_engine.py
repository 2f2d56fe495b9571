"""Engine workers: per-session order, sessions taking turns, close after the request in flight."""

from __future__ import annotations

import threading

from service.engine import EngineWorkers, SerialQueue
from service.security.ratelimit import TokenBucket
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
