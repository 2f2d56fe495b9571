"""Record faults on the ingest path: oversized records, and copies to dead-letter topics.

``RecordFaults.decode`` wraps a table's batch decoder: it cuts oversized
records out before decoding (they are bad records, reason ``oversized``), and
after decoding copies every bad record to the table's ``dead_letter_topic``
when it has one. Poison records never stop a table either way: they are
counted and logged by the ingestor like any other decode error.
"""

from __future__ import annotations

from typing import Protocol

from connectors.base import DecodedBatch, RawBatch
from connectors.deadletter import DeadLetterSink, split_oversized
from service.config import LivetablesConfig
from service.metrics import Metrics


class _Decoder(Protocol):
    def decode(self, raw: RawBatch) -> DecodedBatch: ...


class RecordFaults:
    def __init__(self, config: LivetablesConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.sink: DeadLetterSink | None = None
        if any(t.dead_letter_topic for t in config.tables.values()):
            self.sink = DeadLetterSink(
                config.kafka.bootstrap_servers,
                dict(config.kafka.client),
                lambda table, outcome, n: metrics.dead_letters.labels(table, outcome).inc(n),
            )
        for name, table in config.tables.items():
            if table.dead_letter_topic:
                for outcome in ("sent", "failed"):
                    metrics.dead_letters.labels(name, outcome)

    def decode(self, name: str, decoder: _Decoder, raw: RawBatch) -> DecodedBatch:
        table = self.config.tables[name]
        kept, oversized = split_oversized(raw, table.max_record_bytes)
        batch = decoder.decode(kept) if len(kept) else DecodedBatch(rows=None, records=len(raw))
        if oversized:
            batch.errors = oversized + batch.errors
            batch.records = len(raw)
        if batch.errors and self.sink is not None and table.dead_letter_topic:
            self.sink.send(name, table.dead_letter_topic, raw, batch.errors)
        return batch

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
