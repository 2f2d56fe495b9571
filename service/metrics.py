"""Prometheus metrics of the whole path, named as the README's Monitoring section promises.

Per-record latency would cost a Python call per record if observed one at a
time; :class:`BulkHistogram` instead counts a whole batch of observations into
its buckets with one numpy call, and exposes the same histogram families
Prometheus expects.

Conventions: base units (seconds, bytes), explicit buckets, and labels whose
values come from a bounded set: table names from the config, fixed reason and
op vocabularies, and topic/partition on the lag gauge only. Every per-table
series exists from start-up (zero until something happens), so rates read 0,
not "no data", on a quiet table.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from connectors import cputime

# Kafka record timestamp to applied: 1 ms (same host, idle) to 60 s (catching up).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# One Perspective update: ~0.1 ms for a few rows, seconds for a 200k-row conflated
# batch on a full rolling-window table or with many flat views to recompute.
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Records per batch: single records when live and idle, up to 100k when catching up.
BATCH_BUCKETS = (
    1,
    2,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    25000,
    50000,
    100000,
)


# One snapshot: milliseconds for a small table, a minute for tens of millions of rows.
SNAPSHOT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# How a table can start (the ``kind`` label of livetables_table_start): a bounded set.
START_KINDS = (
    "snapshot",
    "replay",
    "fallback:config_changed",
    "fallback:corrupt",
    "fallback:retention",
    "fallback:topic_changed",
    "fallback:load_failed",
)


class BulkHistogram(Collector):
    """A labelled histogram that accepts a whole array of observations at once."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ):
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._series: dict[tuple[str, ...], list] = {}
        self._lock = threading.Lock()

    def labels_init(self, *labelvalues: str) -> None:
        """Create the series for these label values with every bucket at zero."""
        with self._lock:
            self._series.setdefault(
                labelvalues, [np.zeros(len(self.bounds) + 1, dtype=np.int64), 0.0]
            )

    def observe_many(self, values: np.ndarray, *labelvalues: str) -> None:
        if len(values) == 0:
            return
        # searchsorted(side="left") puts v into the first bucket whose bound >= v (le semantics).
        counts = np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds) + 1
        )
        total = float(np.sum(values))
        with self._lock:
            series = self._series.setdefault(
                labelvalues, [np.zeros(len(self.bounds) + 1, dtype=np.int64), 0.0]
            )
            series[0] += counts
            series[1] += total

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(k, v[0].copy(), v[1]) for k, v in self._series.items()]
        for labelvalues, counts, total in snapshot:
            cumulative = np.cumsum(counts)
            buckets = [
                (_bound(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric(list(labelvalues), buckets, total)
        yield family


def _bound(value: float) -> str:
    return repr(float(value))


STAGES = ("consume", "extract", "decode", "apply", "replicate", "bookkeeping")


class StageCpuCollector(Collector):
    """CPU seconds spent per table and stage of the ingest path (``connectors/cputime.py``).

    Read from every thread's stage clock at scrape time: the ingest threads never
    touch a Prometheus object for it.
    """

    name = "livetables_stage_cpu_seconds"

    def __init__(self) -> None:
        self.tables: list[str] = []

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [CounterMetricFamily(self.name, self._doc, labels=["table", "stage"])]

    _doc = (
        "CPU seconds the ingest threads spent on a table, by stage: consume (reading from "
        "librdkafka), extract (messages to columns), decode (bytes to Arrow rows), apply (the "
        "Perspective update), replicate (feeding /replicate subscribers), bookkeeping "
        "(metrics, queues, progress, bad-record reports)."
    )

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self._doc, labels=["table", "stage"])
        measured = cputime.totals()
        for table in self.tables:
            for stage in STAGES:
                family.add_metric([table, stage], measured.get((table, stage), 0.0))
        yield family


class Metrics:
    """Every livetables metric, in a registry of its own."""

    def __init__(self, version: str) -> None:
        # *_created series double the output and carry nothing an operator reads.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("livetables_build", "The running livetables version.", registry=r).info(
            {"version": version}
        )
        self.records_consumed = Counter(
            "livetables_records_consumed",
            "Kafka records consumed for a table.",
            ["table"],
            registry=r,
        )
        self.rows_applied = Counter(
            "livetables_rows_applied",
            "Rows applied to a table: op=update for upserts/appends, op=remove for removals.",
            ["table", "op"],
            registry=r,
        )
        self.decode_errors = Counter(
            "livetables_decode_errors",
            "Records skipped because they could not be decoded, by reason.",
            ["table", "reason"],
            registry=r,
        )
        self.update_latency = BulkHistogram(
            "livetables_update_latency_seconds",
            "Seconds from each record's Kafka record timestamp (CreateTime set by the producer, "
            "or LogAppendTime set by the broker if the topic uses it) to the wall-clock moment "
            "the table update holding it returned; one observation per record, 0 if the "
            "producer's clock is ahead.",
            ["table"],
            LATENCY_BUCKETS,
        )
        r.register(self.update_latency)
        self.update_duration = Histogram(
            "livetables_update_duration_seconds",
            "Seconds spent inside one Perspective table update (and removal) call, "
            "views recomputed included.",
            ["table"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "livetables_batch_rows",
            "Kafka records per batch applied to a table (after conflation).",
            ["table"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "livetables_consumer_lag_messages",
            "Messages in a partition not yet applied to the table: the latest known high "
            "watermark minus the next offset to apply (refreshed from librdkafka statistics).",
            ["table", "topic", "partition"],
            registry=r,
        )
        self.table_rows = Gauge("livetables_table_rows", "Rows in a table.", ["table"], registry=r)
        self.table_ready = Gauge(
            "livetables_table_ready",
            "1 once a table has applied everything up to the end offsets seen at start-up.",
            ["table"],
            registry=r,
        )
        self.kafka_connected = Gauge(
            "livetables_kafka_connected",
            "1 while the table's consumer reaches a broker, 0 while every broker is down.",
            ["table"],
            registry=r,
        )
        self.websocket_sessions = Gauge(
            "livetables_websocket_sessions",
            "Open websocket sessions (Perspective clients and browser replicas).",
            registry=r,
        )
        self.websocket_bytes_sent = Counter(
            "livetables_websocket_bytes_sent",
            "Bytes of websocket message payloads sent to clients.",
            registry=r,
        )
        self.websocket_messages_sent = Counter(
            "livetables_websocket_messages_sent",
            "Websocket messages sent to clients.",
            registry=r,
        )
        self.websocket_requests = Counter(
            "livetables_websocket_requests",
            "Perspective requests received from websocket clients, refused ones included.",
            registry=r,
        )
        self.websocket_rejected = Counter(
            "livetables_websocket_rejected_requests",
            "Websocket requests refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.websocket_disconnects = Counter(
            "livetables_websocket_disconnects",
            "Websocket sessions ended, by reason (client, slow, shutdown, rejected, expired, "
            "snapshot_too_large).",
            ["reason"],
            registry=r,
        )
        self.websocket_views = Gauge(
            "livetables_websocket_views",
            "Live views that websocket clients hold on the hosted tables.",
            registry=r,
        )
        self.auth_failures = Counter(
            "livetables_auth_failures",
            "Requests refused by authentication or per-table access, by reason.",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "livetables_dead_letter_records",
            "Bad records copied to a table's dead-letter topic (outcome: sent, failed).",
            ["table", "outcome"],
            registry=r,
        )
        self.dead_letters_truncated = Counter(
            "livetables_dead_letter_truncated",
            "Dead-letter copies cut down to fit the producer's message.max.bytes (an oversized "
            "record, typically); each is also counted as sent or failed.",
            ["table"],
            registry=r,
        )
        self.consumer_restarts = Counter(
            "livetables_consumer_restarts",
            "Times a table's consumer failed and was restarted, resuming after the last "
            "batch it had handed over.",
            ["table"],
            registry=r,
        )
        self.applier_restarts = Counter(
            "livetables_applier_restarts",
            "Times the applier thread failed and was restarted (batches it had not applied "
            "yet are kept).",
            registry=r,
        )
        # Derived tables (service/derived) and retention (service/retention).
        self.derived_refresh = Histogram(
            "livetables_derived_refresh_seconds",
            "Seconds one refresh of a derived table took: reading the grouped view over its "
            "source, finding the groups that changed, applying them.",
            ["table"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.derived_refresh_failures = Counter(
            "livetables_derived_refresh_failures",
            "Refreshes of a derived table that failed (retried after its interval).",
            ["table"],
            registry=r,
        )
        self.rows_expired = Counter(
            "livetables_rows_expired",
            "Rows removed from a table because they were older than its retention.",
            ["table"],
            registry=r,
        )
        self.expiry_failures = Counter(
            "livetables_expiry_failures",
            "Expiry ticks of a table that failed (retried on the next tick).",
            ["table"],
            registry=r,
        )
        # How each table started, and its snapshots (service/snapshots/).
        self.table_start = Gauge(
            "livetables_table_start",
            "1 for how a table started: snapshot (loaded, then the log's tail), replay (from "
            "its start policy: snapshots off or none yet), or fallback:<reason> (a snapshot "
            "was there but not usable: config_changed, corrupt, retention, topic_changed, "
            "load_failed; replayed instead).",
            ["table", "kind"],
            registry=r,
        )
        self.snapshot_duration = Histogram(
            "livetables_snapshot_duration_seconds",
            "Seconds to take one snapshot of a table: fold its rows and write them durably "
            "(on the snapshot thread; ingestion goes on meanwhile).",
            ["table"],
            buckets=SNAPSHOT_BUCKETS,
            registry=r,
        )
        self.snapshot_bytes = Gauge(
            "livetables_snapshot_bytes",
            "Size of a table's newest snapshot file (written, or loaded at start-up).",
            ["table"],
            registry=r,
        )
        self.snapshot_age = Gauge(
            "livetables_snapshot_age_seconds",
            "Seconds since the moment a table's newest snapshot stands for; -1 while it has none.",
            ["table"],
            registry=r,
        )
        self.snapshots = Counter(
            "livetables_snapshots",
            "Snapshots of a table by outcome (written, failed).",
            ["table", "outcome"],
            registry=r,
        )
        self.snapshot_restore = Gauge(
            "livetables_snapshot_restore_seconds",
            "Seconds a table took at start-up to read, check and load its snapshot (0: none).",
            ["table"],
            registry=r,
        )
        # The HTTP port under load or attack (service/web/server.py).
        self.http_connections = Gauge(
            "livetables_http_connections",
            "Open TCP connections to the HTTP port, websockets included.",
            registry=r,
        )
        self.connections_rejected = Counter(
            "livetables_connections_rejected",
            "TCP connections closed at accept time, by reason (total, per_address: a cap was "
            "reached; open_files: accepting paused at the open-file limit).",
            ["reason"],
            registry=r,
        )
        self.http_rejected = Counter(
            "livetables_http_requests_rejected",
            "HTTP requests refused before any handler ran, by reason (host: not in "
            "server.allowed_hosts; body: a request body, which no endpoint takes).",
            ["reason"],
            registry=r,
        )
        self.stage_cpu = StageCpuCollector()
        r.register(self.stage_cpu)
        # The process itself: resident memory (the tables live in it), CPU, file descriptors.
        ProcessCollector(registry=r)

    def init_table(self, table: str) -> None:
        """Create a table's series at zero, so that it is visible before its first record."""
        self.records_consumed.labels(table)
        self.consumer_restarts.labels(table)
        for op in ("update", "remove"):
            self.rows_applied.labels(table, op)
        self.update_latency.labels_init(table)
        self.update_duration.labels(table)
        self.batch_rows.labels(table)
        self.table_rows.labels(table).set(0)
        self.table_ready.labels(table).set(0)
        if table not in self.stage_cpu.tables:
            self.stage_cpu.tables.append(table)
        for kind in START_KINDS:
            self.table_start.labels(table, kind).set(0)

    def table_started(self, table: str, kind: str) -> None:
        """Mark how ``table`` started (one of START_KINDS)."""
        for known in START_KINDS:
            self.table_start.labels(table, known).set(1 if known == kind else 0)

    def init_snapshots(self, table: str) -> None:
        """A table's snapshot series, at zero (age -1: none yet), when snapshots are on."""
        self.snapshot_duration.labels(table)
        self.snapshot_bytes.labels(table).set(0)
        self.snapshot_age.labels(table).set(-1)
        self.snapshot_restore.labels(table).set(0)
        for outcome in ("written", "failed"):
            self.snapshots.labels(table, outcome)

    def init_derived(self, table: str) -> None:
        """A derived table's series at zero: rows, updates, readiness and refreshes.

        It consumes no records, so it has no consumer, lag or latency series.
        """
        for op in ("update", "remove"):
            self.rows_applied.labels(table, op)
        self.update_duration.labels(table)
        self.table_rows.labels(table).set(0)
        self.table_ready.labels(table).set(0)
        self.derived_refresh.labels(table)
        self.derived_refresh_failures.labels(table)

    def init_retention(self, table: str) -> None:
        self.rows_expired.labels(table)
        self.expiry_failures.labels(table)

    def observe_latency(self, table: str, timestamps_ms: Any, applied_at: float) -> None:
        """Observe ``applied_at`` (epoch seconds) minus each Kafka record timestamp (epoch ms).

        Records without a timestamp (librdkafka reports -1) are not observed; a record
        stamped in the future (the producer's clock is ahead) counts as 0 s.
        """
        stamps = np.asarray(timestamps_ms, dtype=np.float64)
        stamps = stamps[stamps > 0]
        latencies = applied_at - stamps / 1000.0
        np.maximum(latencies, 0.0, out=latencies)
        self.update_latency.observe_many(latencies, table)
