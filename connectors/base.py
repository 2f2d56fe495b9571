"""The small vocabulary shared by sources and decoders.

A source hands over a :class:`RawBatch`: parallel lists of what Kafka gave
(values, keys, timestamps, partitions, offsets, and headers when a table asks
for them), one entry per record, never a Python object per record. A decoder
turns it into a :class:`DecodedBatch`: one Arrow table of the table's schema,
the keys to remove, and the bad records as data (:class:`DecodeError`), so a
malformed record is counted and logged, never an exception that crosses a
thread.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pyarrow as pa

from service.config import TableConfig
from service.formatconfig import FormatOptions, SchemaRegistryConfig


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Records of one topic as consumed, in Kafka order per partition."""

    topic: str
    values: list[bytes | None]
    keys: list[bytes | None]
    timestamps_ms: list[int]
    partitions: list[int]
    offsets: list[int]
    headers: list[list[tuple[str, bytes]] | None] | None = None

    def __len__(self) -> int:
        return len(self.values)

    def take(self, keep: Sequence[int]) -> RawBatch:
        """The records at positions ``keep``, every per-record list filtered alike."""
        n = len(self)
        changes = {}
        for f in fields(self):
            column = getattr(self, f.name)
            if isinstance(column, list) and len(column) == n:
                changes[f.name] = [column[i] for i in keep]
        return replace(self, **changes)


Locator = Callable[[int], tuple[str, int, int]]
"""Maps a value's position in a batch to (topic, partition, offset)."""


@dataclass(frozen=True, slots=True)
class DecodeError:
    """One record that could not become a row; where it is and why."""

    topic: str
    partition: int
    offset: int
    reason: str
    detail: str


@dataclass(slots=True)
class DecodedBatch:
    """What one decode produced, ready to apply to a table.

    ``rows`` holds the records to update (for an indexed table, only the last
    record per key); ``removals`` the index values to remove. ``timestamps_ms``
    are the Kafka timestamps of the records that became rows or removals, for
    the latency histogram.
    """

    rows: pa.Table | None
    removals: pa.Array | None = None
    errors: list[DecodeError] = field(default_factory=list)
    records: int = 0
    timestamps_ms: pa.Array | None = None

    @property
    def row_count(self) -> int:
        return 0 if self.rows is None else self.rows.num_rows

    @property
    def removal_count(self) -> int:
        return 0 if self.removals is None else len(self.removals)


@dataclass(frozen=True)
class DecoderSpec:
    """What one decoder reads: a format with its options, and where each column is.

    ``paths`` maps a column to its path inside the record (``("price", "last")``);
    an empty path means the whole decoded value (a key that is a plain string or
    number). ``subject`` is the registry subject for the record schema the table
    was derived from (avro and protobuf through a registry).
    """

    format: str
    options: FormatOptions
    paths: dict[str, tuple[str, ...]]
    registry: SchemaRegistryConfig | None = None
    subject: str | None = None

    @classmethod
    def for_values(
        cls, table: TableConfig, columns: list[str], registry: SchemaRegistryConfig | None
    ) -> DecoderSpec:
        paths = {c: tuple(table.fields.get(c, c).split(".")) for c in columns}
        subject = table.format_options.subject or f"{table.topic_list[0]}-value"
        return cls(table.format, table.format_options, paths, registry, subject)

    @classmethod
    def for_key(
        cls, table: TableConfig, registry: SchemaRegistryConfig | None
    ) -> DecoderSpec | None:
        key = table.key
        if key is None or key.format == "string":
            return None
        if key.column is not None:
            paths: dict[str, tuple[str, ...]] = {key.column: ()}
        else:
            paths = {c: tuple(p.split(".")) for c, p in (key.fields or {}).items()}
        subject = key.format_options.subject or f"{table.topic_list[0]}-key"
        return cls(key.format, key.format_options, paths, registry, subject)


class Decoder(abc.ABC):
    """Turns the value bytes of whole batches into Arrow rows of one table's schema."""

    #: the ``format:`` name in the config
    name: str

    def __init__(self, spec: DecoderSpec, arrow_schema: pa.Schema):
        self.spec = spec
        self.arrow_schema = arrow_schema

    @abc.abstractmethod
    def decode_values(
        self, values: list[bytes], locate: Locator
    ) -> tuple[pa.Table, np.ndarray, list[DecodeError]]:
        """Decode non-null values into rows.

        Returns the rows (schema ``arrow_schema``), the positions in ``values``
        that those rows came from (ascending, int64), and an error per bad
        value; ``locate(i)`` gives (topic, partition, offset) of value ``i`` for
        the errors, computed only for the records that need one.
        """
