"""Engine work for clients runs on worker threads, never on the IOLoop.

A Perspective request can take seconds (building a view over a large table,
serialising it), and the IOLoop also answers ``/healthz``, ``/metrics`` and
every other client. perspective-python 4.3.0 releases the GIL for the whole of
``Session.handle_request`` and ``Session.close`` (``py.allow_threads`` in its
Rust binding), so engine calls on a few worker threads run truly beside the
IOLoop; the engine itself locks each table (a read lock per view query, the
write lock per update), so they are safe beside the applier too.

:class:`SerialQueue` keeps one session's requests in order (a client sends
``make_view`` then ``to_columns`` on that view without waiting) while
different sessions share the pool: each queue hands the pool one request at a
time, so a session with a long backlog takes turns with the others instead of
holding a thread.

:class:`TableGate` makes clients' reads of a table take turns with what
changes it. The engine guards each table with a ``std::shared_mutex``, which
glibc hands to readers first: measured on perspective 4.3.0, two threads
serialising views of a 300k-row table back to back kept a 1000-row update,
and new views of that table, waiting for minutes (one thread: 0.3 s). While
engine calls all ran on the one IOLoop there was never a second reader; with
worker threads there is. So every client call that only reads takes the
gate's read side; table updates, and client calls that take the engine's
write lock (making, deleting, expanding views; closing a session), take its
write side, in turn; a waiting writer lets no new reader in.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from connectors.threadname import name_os_thread

log = logging.getLogger(__name__)

Task = Callable[[], None]


class EngineWorkers:
    """A small pool of threads for engine calls made on behalf of clients."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix="engine",
            initializer=name_os_thread,
            initargs=("engine",),
        )
        self._outstanding = 0
        self._idle = threading.Condition()
        self._closed = False

    def submit(self, task: Callable[[], object]) -> Future:
        """Run ``task`` on a worker; its exceptions are logged, never lost silently."""
        with self._idle:
            if self._closed:
                raise RuntimeError("engine workers are shut down")
            self._outstanding += 1
        return self._pool.submit(self._run, task)

    def _run(self, task: Callable[[], object]) -> object:
        try:
            return task()
        except Exception:
            log.exception("engine work failed")
            raise
        finally:
            with self._idle:
                self._outstanding -= 1
                self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until no task is queued or running (True), or ``timeout`` seconds (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Let queued work finish (sessions closing), then stop the threads."""
        if not self.drain(timeout):
            log.warning("engine work still running after %.0f s at shutdown", timeout)
        with self._idle:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


class SerialQueue:
    """One session's engine calls, run one after another in the order they came."""

    def __init__(self, workers: EngineWorkers) -> None:
        self._workers = workers
        self._tasks: deque[Task] = deque()
        self._lock = threading.Lock()
        self._running = False
        self._closed = False

    def __len__(self) -> int:
        """Tasks waiting or running."""
        with self._lock:
            return len(self._tasks) + (1 if self._running else 0)

    def submit(self, task: Task) -> None:
        with self._lock:
            if self._closed:
                return
            self._tasks.append(task)
            if self._running:
                return
            self._running = True
        self._next()

    def close(self, final: Task) -> None:
        """Drop the tasks not started yet and run ``final`` after the one running, if any."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._tasks.clear()
            self._tasks.append(final)
            if self._running:
                return
            self._running = True
        self._next()

    def _next(self) -> None:
        try:
            self._workers.submit(self._step)
        except RuntimeError:  # shut down: nothing will run any more
            with self._lock:
                self._tasks.clear()
                self._running = False

    def _step(self) -> None:
        with self._lock:
            task = self._tasks.popleft() if self._tasks else None
        try:
            if task is not None:
                task()
        finally:
            with self._lock:
                more = bool(self._tasks)
                if not more:
                    self._running = False
            if more:
                self._next()


class TableGate:
    """A phase-fair readers-writer gate for one table: client reads vs. the applier's updates.

    Readers share it. A writer waits for the readers inside, and while it waits no
    new reader enters; when it is done, every reader that was waiting goes in
    before the next writer does, so neither side can keep the other out. Writers
    go in the order they came.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._readers_waiting = 0
        self._admitting = 0  # readers let in by the last write, not yet inside
        self._writing = False
        self._writers_waiting = 0
        self._generation = 0  # bumped as each write ends
        self._next_ticket = 0  # writers' turns, first come first served
        self._serving = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            generation = self._generation
            self._readers_waiting += 1
            while self._writing or (self._writers_waiting and self._generation == generation):
                self._cond.wait()
            self._readers_waiting -= 1
            if self._generation != generation and self._admitting:
                self._admitting -= 1
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._writers_waiting += 1
            while self._writing or self._readers or self._admitting or ticket != self._serving:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._serving += 1
                self._generation += 1
                self._admitting = self._readers_waiting
                self._cond.notify_all()
