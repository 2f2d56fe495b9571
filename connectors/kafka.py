"""A Kafka source: one consumer thread reading every partition of a table's topics.

There is no consumer group: every replica of livetables needs the whole
table, so partitions are ``assign()``-ed explicitly (which also starts at
once, where a group would wait seconds for a rebalance). Offsets are never
committed; the start policy decides where each run begins.

The thread hands over whole batches (:class:`RawBatch`) plus the next offset
of every partition it has read to, so the service can tell when a table has
caught up with the end offsets seen at start-up. librdkafka reconnects by
itself after a broker outage and resumes at the next offset; this module only
reports whether a broker is reachable.

Nothing that goes wrong may leave a table silently dead. librdkafka re-raises
an exception from ``stats_cb``/``error_cb`` out of the next ``consume()``, so
those callbacks, and the owner's callbacks other than ``on_batch``, never let
one escape: it is logged (rate-limited) and the loop goes on. If the loop
fails anyway, the consumer is closed and a new one restarts with backoff
(``on_restart`` counts it) from the next offset of every partition that was
*handed over* in ``on_batch``: what was handed over is not read twice, what
was not is read again, so no record is lost or applied twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from connectors import extract, kafkabatch
from connectors.assignment import list_partitions, start_and_end_offsets
from connectors.backoff import Backoff
from connectors.base import RawBatch
from connectors.cputime import StageClock, thread_clock
from connectors.kafkalog import LibrdkafkaLog
from connectors.source import Partition, SourceCallbacks, StartPolicy
from connectors.threadname import name_os_thread

log = logging.getLogger(__name__)

MAX_BATCH = 10000
POLL_TIMEOUT_S = 0.1
LINGER_S = 0.005
# librdkafka's events (statistics, errors, logs) served per loop on the native path.
EVENTS_PER_LOOP = 100
METADATA_REFRESH_S = 30.0
CONNECTION_ERRORS = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}
CALLBACK_LOG_INTERVAL_S = 10.0


class KafkaSource:
    """Consumes a table's topics on a thread of its own until stopped."""

    def __init__(
        self,
        name: str,
        topics: list[str],
        properties: dict[str, object],
        policy: StartPolicy,
        callbacks: SourceCallbacks,
        headers: bool = False,
        native: bool = True,
    ) -> None:
        self.name = name
        self.topics = list(topics)
        self.policy = policy
        self.callbacks = callbacks
        self.headers = headers  # carry record headers: only for tables with header columns
        # Read batches with the native reader (connectors/kafkabatch.py) when it is available.
        self.native = native
        self._reader = None
        self._clock = StageClock()  # the consumer thread's own once it runs
        self._properties = dict(properties)
        self._properties["stats_cb"] = self._on_stats
        self._properties["error_cb"] = self._on_error
        # librdkafka's log (offset resets among it) into ours, with the table's name.
        self._properties["logger"] = LibrdkafkaLog(name, policy.reset)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_guarded, name=f"kafka-{name}", daemon=True)
        self._assigned: set[Partition] = set()
        # The next offset to read per partition: where a restarted consumer resumes.
        self._resume: dict[Partition, int] = {}
        self._connected: bool | None = None
        self._last_error_log = 0.0
        self._callback_logged_at = -CALLBACK_LOG_INTERVAL_S
        self._backoff = Backoff()
        # Set while the consumer is down after a failure, until its replacement starts.
        self.failure: BaseException | None = None
        self.restarts = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def resume_at(self, offsets: dict[Partition, int]) -> None:
        """Start these partitions at these offsets instead of the start policy (before start).

        The owner restored the table from a snapshot that holds everything before
        them. Partitions not listed are read from the beginning, as partitions
        that appear while running are: they came after the snapshot.
        """
        if self._thread.ident is not None:
            raise RuntimeError("resume offsets are set before the source starts")
        self._resume = dict(offsets)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() or not self._thread.ident

    def _run_guarded(self) -> None:
        """Run the consumer; after a failure, restart it with backoff until stopped."""
        name_os_thread(self._thread.name)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._run()
                return
            except Exception as exc:  # shown by /healthz while down, counted, then restarted
                self.failure = exc
                self.restarts += 1
                delay = self._backoff.delay(time.monotonic() - started)
                log.exception(
                    "table %s: consumer failed; restarting in %.1f s (restart %d), resuming at "
                    "the next offset handed over",
                    self.name,
                    delay,
                    self.restarts,
                )
                if self.callbacks.on_restart is not None:
                    self._notify(self.callbacks.on_restart, exc)
                self._stop.wait(delay)
            except BaseException as exc:  # not ours to survive: the thread ends, /healthz says so
                self.failure = exc
                log.exception("table %s: consumer thread stopped", self.name)
                return

    # -- the loop --------------------------------------------------------------

    def _run(self) -> None:
        consumer = Consumer(self._properties)
        self.failure = None
        self._assigned = set()
        reader = None
        if self.native:
            reader = kafkabatch.open_reader(
                consumer, str(self._properties["client.id"]), capacity=MAX_BATCH
            )
        self._reader = reader
        clock = self._clock = thread_clock()
        try:
            self._assign_new_partitions(consumer, initial=True)
            next_refresh = time.monotonic() + METADATA_REFRESH_S
            while not self._stop.is_set():
                clock.start()
                if reader is not None:
                    self._read_native(consumer, reader)
                else:
                    messages = self._next_batch(consumer)
                    clock.lap(self.name, "consume")
                    if messages:
                        self._handle(messages)
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + METADATA_REFRESH_S
                    self._assign_new_partitions(consumer, initial=False)
        finally:
            self._reader = None
            try:
                if reader is not None:
                    reader.close()  # before the consumer: librdkafka waits for its queues
                consumer.close()
            except Exception as exc:  # a callback's exception re-raised at close: already gone
                log.debug("table %s: consumer close: %r", self.name, exc)

    def _read_native(self, consumer: Consumer, reader) -> None:
        """One native read: the partitions' messages as columns, EOFs and errors as events.

        The partitions' fetch queues are routed to the reader, so the consumer's
        own queue holds librdkafka's events only; serving it here runs the
        statistics, error and log callbacks as ``consume()`` would.
        """
        served = consumer.consume(EVENTS_PER_LOOP, 0)
        if served:  # errors, or messages of a partition not routed (none is expected)
            self._handle(served)
        columns = reader.read(
            MAX_BATCH,
            int(POLL_TIMEOUT_S * 1000),
            int(LINGER_S * 1000),
            keys=True,
            timestamps=True,
            headers=self.headers,
        )
        self._clock.lap(self.name, "consume")
        if columns is None:
            return
        positions: dict[Partition, int] = {}
        for topic, partition, offset, code, reason in columns["events"]:
            if code == KafkaError._PARTITION_EOF:
                positions[(topic, partition)] = offset
            else:
                self._on_error(KafkaError(code, reason))
        if columns["count"]:
            self._set_connected(True)
            batches = extract.columnar_batches(columns)
            self._hand_over(batches, positions)
        elif positions:
            self._hand_over([], positions)

    def _next_batch(self, consumer: Consumer) -> list:
        """What is already fetched, up to MAX_BATCH; else wait for the next message only.

        ``consume(n, timeout)`` waits until it has ``n`` messages or the timeout
        passes, which would add up to the timeout to every record's latency on a
        quiet topic. Draining without waiting, and otherwise waiting for one
        message plus a short linger, gives large batches under a backlog and low
        latency live.
        """
        messages = consumer.consume(MAX_BATCH, 0)
        if messages:
            return messages
        messages = consumer.consume(1, POLL_TIMEOUT_S)
        if messages:
            # A few milliseconds for the rest of a burst: fewer, larger updates.
            messages.extend(consumer.consume(MAX_BATCH - 1, LINGER_S))
        return messages

    def _handle(self, messages: list) -> None:
        good = [m for m in messages if m.error() is None]
        positions: dict[Partition, int] = {}
        if len(good) != len(messages):
            for m in messages:
                error = m.error()
                if error is None:
                    continue
                if error.code() == KafkaError._PARTITION_EOF:
                    positions[(m.topic(), m.partition())] = m.offset()
                else:
                    self._on_error(error)
        if good:
            self._set_connected(True)
        batches = extract.raw_batches(self.topics, good, self.headers) if good else []
        if batches or positions:
            self._hand_over(batches, positions)

    def _hand_over(self, batches: list[RawBatch], positions: dict[Partition, int]) -> None:
        """Each batch with the next offset of its partitions, EOF positions folded in.

        What the owner's ``on_batch`` does (decoding, queueing) is timed by the owner;
        the time up to it is this stage's, ``extract``.
        """
        clock = self._clock
        if not batches:
            clock.lap(self.name, "extract")
            self.callbacks.on_batch(RawBatch(self.topics[0], [], [], [], [], []), positions)
            self._resume.update(positions)
            return
        for raw in batches:
            batch_positions = extract.next_offsets(raw)
            for tp, offset in positions.items():
                if tp[0] == raw.topic and offset > batch_positions.get(tp, -1):
                    batch_positions[tp] = offset
            clock.lap(self.name, "extract")
            self.callbacks.on_batch(raw, batch_positions)
            self._resume.update(batch_positions)
        topics = {raw.topic for raw in batches}
        elsewhere = {tp: offset for tp, offset in positions.items() if tp[0] not in topics}
        if elsewhere:  # end of partitions of a topic with no record in this read
            self._hand_over([], elsewhere)

    # -- partitions and start offsets -------------------------------------------

    def _assign_new_partitions(self, consumer: Consumer, initial: bool) -> None:
        """Assign every partition not yet assigned; the first time, retry until it works.

        Right after a topic is created, or while a broker is down, metadata and
        watermark requests fail (unknown leader, not leader, transport errors):
        the first assignment retries with backoff until the source is stopped;
        a periodic refresh just tries again next time.
        """
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._assign_once(consumer, initial)
                return
            except KafkaException as exc:
                if not initial:
                    log.debug("table %s: partition refresh failed: %s", self.name, exc)
                    return
                log.warning("table %s: cannot assign partitions yet (%s); retrying", self.name, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _assign_once(self, consumer: Consumer, initial: bool) -> None:
        try:
            found = list_partitions(consumer, self.topics, self.name)
        except KafkaException:
            self._set_connected(False)
            raise
        self._set_connected(True)
        new = sorted(set(found) - self._assigned)
        if not new:
            if initial:
                self._notify(self.callbacks.on_assigned, {}, {})
            return
        # After a restart, partitions read before resume where their hand-over stopped, and
        # any others appeared since the first assignment: they are read from the beginning.
        starts, ends = start_and_end_offsets(
            consumer, new, self.policy, initial and not self._resume
        )
        resumed = {tp: self._resume[tp] for tp in new if tp in self._resume}
        starts.update(resumed)
        if self._reader is not None:
            # Routed before they are assigned, so no message of theirs lands elsewhere.
            for topic, partition in new:
                self._reader.route(topic, partition)
        consumer.incremental_assign([KafkaTopicPartition(t, p, starts[(t, p)]) for t, p in new])
        self._assigned.update(new)
        for tp in new:
            self._resume.setdefault(tp, starts[tp])
        policy = str(self.policy)
        log.info(
            "table %s: assigned %d partition(s) of %s, start %s",
            self.name,
            len(new),
            ", ".join(sorted({t for t, _ in new})),
            f"at saved offsets ({len(resumed)} resumed)" if resumed else policy,
        )
        first_starts = {tp: o for tp, o in starts.items() if o >= 0 and tp not in resumed}
        self._notify(self.callbacks.on_assigned, first_starts, ends)

    # -- librdkafka callbacks ---------------------------------------------------

    def _notify(self, callback: Callable[..., None], *args: object) -> None:
        """Call an owner's callback; what it raises is logged, never the loop's end."""
        try:
            callback(*args)
        except Exception:
            self._log_callback_failure(getattr(callback, "__name__", repr(callback)))

    def _log_callback_failure(self, what: str) -> None:
        now = time.monotonic()
        if now - self._callback_logged_at >= CALLBACK_LOG_INTERVAL_S:
            self._callback_logged_at = now
            log.exception("table %s: %s failed; ignored", self.name, what)

    def _on_stats(self, stats_json: str) -> None:
        # librdkafka would re-raise an exception from here out of consume(): none escapes.
        try:
            self._read_stats(stats_json)
        except Exception:
            self._log_callback_failure("the statistics callback")

    def _read_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
        except ValueError:
            return
        highs: dict[Partition, int] = {}
        for topic, topic_stats in stats.get("topics", {}).items():
            for partition, p_stats in topic_stats.get("partitions", {}).items():
                pid = int(partition)
                if (
                    pid >= 0
                    and (topic, pid) in self._assigned
                    and p_stats.get("hi_offset", -1) >= 0
                ):
                    highs[(topic, pid)] = p_stats["hi_offset"]
        if highs:
            self._notify(self.callbacks.on_watermarks, highs)

    def _on_error(self, error: KafkaError) -> None:
        # Called by librdkafka (error_cb) and by the loop; never raises either way.
        try:
            if error.code() in CONNECTION_ERRORS:
                self._set_connected(False)
            now = time.monotonic()
            if now - self._last_error_log >= 10.0:
                self._last_error_log = now
                log.warning("table %s: kafka: %s", self.name, error.str())
        except Exception:
            self._log_callback_failure("the error callback")

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            was, self._connected = self._connected, connected
            if not connected:
                log.warning("table %s: no broker reachable; retrying", self.name)
            elif was is False:
                log.info("table %s: reconnected to kafka", self.name)
            self._notify(self.callbacks.on_connected, connected)
