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
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pyarrow as pa

from connectors.spec import DecoderSpec, FormatOptions

if TYPE_CHECKING:
    from connectors.registry import RegisteredSchema


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
        changes: dict[str, Any] = {}
        for f in fields(self):
            column = getattr(self, f.name)
            if isinstance(column, list) and len(column) == n:
                changes[f.name] = [column[i] for i in keep]
        return replace(self, **changes)


Locator = Callable[[int], tuple[str, int, int]]
"""Maps a value's position in a batch to (topic, partition, offset)."""


class DecodeReason(StrEnum):
    """Why a record did not become a row: the ``reason`` label of ``decode_errors_total``.

    Each value is the metric label (and the dead-letter ``livetables-error-reason``
    header), so a member compares and prints as that string.
    """

    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    TYPE_MISMATCH = "type_mismatch"
    INVALID_UTF8 = "invalid_utf8"
    OVERSIZED = "oversized"
    DECODER_ERROR = "decoder_error"
    MISSING_INDEX = "missing_index"
    BAD_KEY = "bad_key"
    UNEXPECTED_TOMBSTONE = "unexpected_tombstone"
    UPDATE_FAILED = "update_failed"
    INVALID_CSV = "invalid_csv"
    INVALID_AVRO = "invalid_avro"
    INVALID_PROTOBUF = "invalid_protobuf"
    INVALID_ARROW = "invalid_arrow"
    BAD_FRAMING = "bad_framing"
    UNKNOWN_SCHEMA = "unknown_schema"
    REGISTRY_UNAVAILABLE = "registry_unavailable"


@dataclass(frozen=True, slots=True)
class DecodeError:
    """One record that could not become a row; where it is and why."""

    topic: str
    partition: int
    offset: int
    reason: DecodeReason
    detail: str


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """What one decode produced, ready to apply to a table (frozen: it crosses threads).

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


class RecordSchema(Protocol):
    """A record schema (an Avro record, a Protobuf message) seen as Perspective columns."""

    def columns(self) -> tuple[dict[str, str], dict[str, str]]:
        """(column -> Perspective type, column -> dotted path for nested ones)."""
        ...

    def path_type(self, path: tuple[str, ...]) -> str | None:
        """The Perspective type of the field at ``path``; None if absent or unmappable."""
        ...


class Decoder(abc.ABC):
    """Turns the value bytes of whole batches into Arrow rows of one table's schema.

    The class attributes describe the format to the configuration: its name, the
    ``format_options`` it reads, and whether its records carry a schema that a
    table may take its columns from (:meth:`record_schema`).
    """

    #: the ``format:`` name in the config
    name: ClassVar[str]
    #: the ``format_options`` this format reads
    options: ClassVar[frozenset[str]] = frozenset()
    #: whether records carry a schema a table may take its columns from
    carries_schema: ClassVar[bool] = False

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

    @classmethod
    def uses_registry(cls, options: FormatOptions) -> bool:
        """Whether records with these options are read through a schema registry."""
        return False

    @classmethod
    def record_schema(
        cls, options: FormatOptions, registered: RegisteredSchema | None
    ) -> RecordSchema:
        """The record schema of the options, or of ``registered`` (a registry's latest).

        Raises ValueError when it cannot be loaded or is not a record.
        """
        raise ValueError(f"format {cls.name} carries no schema: give schema:")
