"""What the web handlers may read: the config, the tables, the ingest progress, the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.config import LivetablesConfig, TableConfig
from service.config.durations import format_duration
from service.ingest import Ingestor
from service.metrics import Metrics
from service.replication import Replicator
from service.tables import TableHost


def _extras(table: TableConfig) -> dict[str, Any]:
    """What only derived tables and tables with retention have."""
    extras: dict[str, Any] = {}
    if table.derived:
        assert table.view is not None
        extras["from"] = table.from_
        extras["view"] = table.view.model_dump(exclude_defaults=True)
        extras["refresh"] = format_duration(table.refresh)
    if table.retention is not None:
        extras["retention"] = format_duration(table.retention)
        extras["retention_column"] = table.retention_column
    return extras


@dataclass
class ServiceState:
    config: LivetablesConfig
    host: TableHost
    ingestor: Ingestor
    metrics: Metrics
    replicator: Replicator

    def tables_summary(self) -> list[dict[str, Any]]:
        out = []
        for name, table in self.config.tables.items():
            progress = self.ingestor.progress[name]
            out.append(
                {
                    "name": name,
                    "topics": table.topic_list,
                    "format": None if table.derived else table.format,
                    "rows": self.host.size(name),
                    "schema": dict(table.columns),
                    "index": table.index,
                    "limit": table.limit,
                    "lag": sum(progress.lag().values()),
                    "ready": progress.ready,
                    "kafka_connected": progress.connected,
                    "editable": table.editable,
                    **_extras(table),
                }
            )
        return out

    def refresh_gauges(self) -> None:
        """Values best read at scrape time rather than on every update."""
        for name in self.config.tables:
            progress = self.ingestor.progress[name]
            self.metrics.table_rows.labels(name).set(self.host.size(name))
            self.metrics.table_ready.labels(name).set(1 if progress.ready else 0)
            for (topic, partition), lag in progress.lag().items():
                self.metrics.consumer_lag.labels(name, topic, str(partition)).set(lag)
