"""The ingest side of the service: every table's consumer and pipeline, and the applier.

Each table has a consumer thread (``connectors/kafka.py``) that hands whole
batches to the table's pipeline (``pipeline.py``, the path of a batch top to
bottom), which hands the decoded batches to the single applier thread
(``applier.py``). Two more threads change tables through the same writer:
the deriver refreshes derived tables (``service/derived``) and the expirer
removes rows past their retention (``service/retention``). No record and no
bug may leave a table silently dead: a consumer that fails restarts by itself,
so does the applier, and while any of these threads is down ``/healthz``
names it (:meth:`Ingestor.problems`).
"""

from __future__ import annotations

from connectors.cputime import thread_clock
from connectors.decoding import BatchDecoder
from connectors.kafka import KafkaSource
from connectors.properties import consumer_properties
from connectors.source import SourceCallbacks
from service.config import LivetablesConfig, decode_spec
from service.derived.deriver import Deriver, Progress
from service.ingest.applier import Applier
from service.ingest.pipeline import TablePipeline
from service.ingest.progress import TableProgress
from service.ingest.reporting import BadRecordReport, DeadLetters
from service.ingest.writer import TableWriter
from service.metrics import Metrics
from service.replication import Replicator
from service.retention.book import RetentionBook
from service.retention.expirer import Expirer
from service.snapshots.keeper import SnapshotKeeper
from service.tables import TableHost


class Ingestor:
    """Runs every table's source and the applier until stopped."""

    def __init__(
        self,
        config: LivetablesConfig,
        host: TableHost,
        metrics: Metrics,
        replicator: Replicator,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.replicator = replicator
        fed = [name for name, table in config.tables.items() if not table.derived]
        self.fed = {name: TableProgress(name) for name in fed}
        self.dead_letters = DeadLetters(config, metrics)
        self.report = BadRecordReport(metrics)
        append_tables = frozenset(n for n in fed if config.tables[n].index is None)
        self.writer = TableWriter(host, self.replicator, metrics, RetentionBook(config))
        kafka = config.kafka
        self.consumer_properties = {
            name: consumer_properties(
                kafka.bootstrap_servers, dict(kafka.client), config.tables[name].start, name
            )
            for name in fed
        }
        # Snapshots (service/snapshots/): tables restored at start, mirrored while running.
        # Not those with retention: their rows age by times the snapshots do not keep, and a
        # start lookback as long as the window reads no more than a snapshot would save.
        self.snapshotted = frozenset(n for n in fed if config.tables[n].retention is None)
        self.snapshots: SnapshotKeeper | None = None
        if config.snapshots is not None:
            self.snapshots = SnapshotKeeper(
                config.snapshots,
                {name: config.tables[name] for name in self.snapshotted},
                self.writer,
                {name: self.fed[name] for name in self.snapshotted},
                metrics,
                self.consumer_properties,
            )
        on_applied = self._on_applied if self.snapshots is not None else None
        limits = {n: limit for n in fed if (limit := config.tables[n].limit) is not None}
        self.applier = Applier(
            self.writer, self.fed, metrics, append_tables, limits, on_applied=on_applied
        )
        self.sources = [self._source(name) for name in fed]
        self.deriver = Deriver(config, host, self.writer, metrics, dict(self.fed))
        # Every table's progress, in the configuration's order (/readyz, /api/tables).
        every: dict[str, Progress] = {**self.fed, **self.deriver.progress}
        self.progress = {name: every[name] for name in config.tables}
        self.expirer = Expirer(self.writer, list(self.writer.retention.tables), metrics)

    def _on_applied(self, name: str, batch, positions) -> None:
        if self.snapshots is not None and name in self.snapshotted:
            self.snapshots.applied(name, batch, positions)

    def _source(self, name: str) -> KafkaSource:
        table = self.config.tables[name]
        decoder = BatchDecoder(decode_spec(table, self.config.kafka.schema_registry))
        pipeline = TablePipeline(name, table, decoder, self.dead_letters, self.report)
        progress = self.fed[name]
        metrics = self.metrics

        def on_batch(raw, positions) -> None:
            self.applier.hand_over(name, pipeline.process(raw), positions)
            thread_clock().lap(name, "bookkeeping")

        def on_restart(_failure: BaseException) -> None:
            metrics.consumer_restarts.labels(name).inc()

        snapshots = self.snapshots

        def on_assigned(starts, ends) -> None:
            progress.on_assigned(starts, ends)
            if snapshots is not None and name in self.snapshotted:
                snapshots.assigned(name, starts)

        def on_connected(connected: bool) -> None:
            progress.connected = connected
            metrics.kafka_connected.labels(name).set(1 if connected else 0)

        callbacks = SourceCallbacks(
            on_batch=on_batch,
            on_assigned=on_assigned,
            on_watermarks=progress.on_watermarks,
            on_connected=on_connected,
            on_restart=on_restart,
        )
        metrics.init_table(name)
        return KafkaSource(
            name,
            table.topic_list,
            self.consumer_properties[name],
            table.start,
            callbacks,
            headers=bool(table.headers),
        )

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        self.applier.start()
        self.deriver.start()
        self.expirer.start()
        restored = []
        if self.snapshots is not None:
            restored = [s for s in self.sources if s.name in self.snapshotted]
            self.snapshots.start(restored)  # each source starts once its table is restored
        for source in self.sources:
            if source not in restored:
                self.metrics.table_started(source.name, "replay")
                source.start()

    def stop(self) -> None:
        self.applier.close_intake()
        if self.snapshots is not None:
            self.snapshots.stop_starting()
        for source in self.sources:
            source.stop()
        self.applier.stop()
        self.expirer.stop()
        if self.snapshots is not None:
            self.snapshots.stop()  # the last snapshots, once nothing changes the tables
        self.deriver.stop()  # deletes its views: before the host deletes the tables
        self.dead_letters.close()

    def problems(self) -> list[str]:
        """What /healthz reports: each thread that is dead, or down until its restart."""
        out = [
            problem
            for problem in (self.applier.problem(), self.deriver.problem(), self.expirer.problem())
            if problem is not None
        ]
        for source in self.sources:
            failure = source.failure
            if not source.alive:
                out.append(f"table {source.name}: consumer thread stopped: {failure!r}")
            elif failure is not None:
                out.append(
                    f"table {source.name}: consumer restarting (restart {source.restarts}) "
                    f"after: {failure!r}"
                )
        return out

    @property
    def ready(self) -> bool:
        return all(p.ready for p in self.progress.values())
