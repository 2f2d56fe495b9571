"""The ingest side of the service: every table's consumer and pipeline, and the applier.

Each table has a consumer thread (``connectors/kafka.py``) that hands whole
batches to the table's pipeline (``pipeline.py``, the path of a batch top to
bottom), which hands the decoded batches to the single applier thread
(``applier.py``). No record and no bug may leave a table silently dead: a
consumer that fails restarts by itself, so does the applier, and while either
is down ``/healthz`` names it (:meth:`Ingestor.problems`).
"""

from __future__ import annotations

from connectors.decoding import BatchDecoder
from connectors.kafka import KafkaSource, consumer_properties
from connectors.source import SourceCallbacks
from service.config import LivetablesConfig, decode_spec
from service.ingest.applier import Applier
from service.ingest.pipeline import TablePipeline
from service.ingest.progress import TableProgress
from service.ingest.reporting import BadRecordReport, DeadLetters
from service.ingest.writer import TableWriter
from service.metrics import Metrics
from service.replication import Replicator
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
        self.progress = {name: TableProgress(name) for name in config.tables}
        self.dead_letters = DeadLetters(config, metrics)
        self.report = BadRecordReport(metrics)
        append_tables = frozenset(n for n, t in config.tables.items() if t.index is None)
        writer = TableWriter(host, self.replicator, metrics)
        kafka = config.kafka
        self.consumer_properties = {
            name: consumer_properties(kafka.bootstrap_servers, dict(kafka.client), t.start, name)
            for name, t in config.tables.items()
        }
        # Snapshots (service/snapshots/): tables restored at start, mirrored while running.
        self.snapshots: SnapshotKeeper | None = None
        if config.snapshots is not None:
            self.snapshots = SnapshotKeeper(
                config.snapshots,
                dict(config.tables),
                writer,
                self.progress,
                metrics,
                self.consumer_properties,
            )
        on_applied = self.snapshots.applied if self.snapshots is not None else None
        self.applier = Applier(writer, self.progress, metrics, append_tables, on_applied)
        self.sources = [self._source(name) for name in config.tables]

    def _source(self, name: str) -> KafkaSource:
        table = self.config.tables[name]
        decoder = BatchDecoder(decode_spec(table, self.config.kafka.schema_registry))
        pipeline = TablePipeline(name, table, decoder, self.dead_letters, self.report)
        progress = self.progress[name]
        metrics = self.metrics

        def on_batch(raw, positions) -> None:
            self.applier.hand_over(name, pipeline.process(raw), positions)

        def on_restart(_failure: BaseException) -> None:
            metrics.consumer_restarts.labels(name).inc()

        snapshots = self.snapshots

        def on_assigned(starts, ends) -> None:
            progress.on_assigned(starts, ends)
            if snapshots is not None:
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
        if self.snapshots is not None:
            self.snapshots.start(self.sources)  # each source starts once its table is restored
            return
        for source in self.sources:
            self.metrics.table_started(source.name, "replay")
            source.start()

    def stop(self) -> None:
        self.applier.close_intake()
        if self.snapshots is not None:
            self.snapshots.stop_starting()
        for source in self.sources:
            source.stop()
        self.applier.stop()
        if self.snapshots is not None:
            self.snapshots.stop()  # the last snapshots, once nothing changes the tables
        self.dead_letters.close()

    def problems(self) -> list[str]:
        """What /healthz reports: each thread that is dead, or down until its restart."""
        out = []
        applier = self.applier.problem()
        if applier is not None:
            out.append(applier)
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
