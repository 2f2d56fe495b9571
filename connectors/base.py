"""The small vocabulary shared by sources and decoders.

A source hands over a :class:`RawBatch`: parallel columns of what Kafka gave
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
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.spec import DecoderSpec, FormatOptions

if TYPE_CHECKING:
    from connectors.registry import RegisteredSchema


Column = Sequence[int] | np.ndarray
"""A fixed-width column of a batch: a list of ints, or an integer numpy array."""


class RawBatch:
    """Records of one topic as consumed, in Kafka order per partition: one column per field.

    Values and keys come as Python lists of bytes (``None`` for a tombstone or a
    missing key) or as one Arrow ``large_binary`` array each (the native reader:
    no Python object per record); partitions, offsets and timestamps as lists or
    numpy arrays. Each form of values and keys is made from the other on first
    use and kept, so a decoder that parses whole Arrow arrays (JSON) never builds
    a Python object per record, and one that reads value by value gets its list.
    A batch is used by one thread at a time (its consumer's).
    """

    # Of each pair, one is set at first and the other is made from it on first use.
    _values: list[bytes | None] | None
    _keys: list[bytes | None] | None
    _value_array: Any  # a pyarrow Array or None (pyarrow has no type hints)
    _key_array: Any

    __slots__ = (
        "_key_array",
        "_keys",
        "_value_array",
        "_values",
        "headers",
        "offsets",
        "partitions",
        "timestamps_ms",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        values: Sequence[bytes | None] | pa.Array,
        keys: Sequence[bytes | None] | pa.Array,
        timestamps_ms: Column,
        partitions: Column,
        offsets: Column,
        headers: list[list[tuple[str, bytes | None]] | None] | None = None,
    ) -> None:
        self.topic = topic
        self._values, self._value_array = _either(values)
        self._keys, self._key_array = _either(keys)
        self.timestamps_ms = timestamps_ms
        self.partitions = partitions
        self.offsets = offsets
        self.headers = headers

    def __len__(self) -> int:
        if self._values is not None:
            return len(self._values)
        return len(self._value_array)

    def __repr__(self) -> str:
        return f"RawBatch(topic={self.topic!r}, records={len(self)})"

    @property
    def values(self) -> list[bytes | None]:
        """The values as a list of bytes (None for a tombstone)."""
        if self._values is None:
            self._values = self._value_array.to_pylist()
        return self._values

    @property
    def value_array(self) -> pa.Array:
        """The values as one Arrow ``large_binary`` array (null for a tombstone)."""
        if self._value_array is None:
            self._value_array = pa.array(self._values, pa.large_binary())
        return self._value_array

    @property
    def keys(self) -> list[bytes | None]:
        """The message keys as a list of bytes (None where a message has none)."""
        if self._keys is None:
            self._keys = self._key_array.to_pylist()
        return self._keys

    @property
    def key_array(self) -> pa.Array:
        """The message keys as one Arrow ``large_binary`` array."""
        if self._key_array is None:
            self._key_array = pa.array(self._keys, pa.large_binary())
        return self._key_array

    def tombstones(self) -> np.ndarray | None:
        """A mask of the records whose value is null, or None when there is none."""
        if self._value_array is not None:
            if not self._value_array.null_count:
                return None
            return np.asarray(self._value_array.is_null())
        values = self.values
        if None not in values:
            return None
        return np.fromiter((v is None for v in values), dtype=bool, count=len(self))

    def longest_value(self) -> int:
        """Bytes in the longest value (0 for an empty batch)."""
        if self._value_array is not None:
            return _longest_in_array(self._value_array)
        return _longest_in_list(self.values)

    def longest_key(self) -> int:
        """Bytes in the longest key (0 for an empty batch)."""
        if self._key_array is not None:
            return _longest_in_array(self._key_array)
        return _longest_in_list(self.keys)

    def where(self, i: int) -> tuple[str, int, int]:
        """(topic, partition, offset) of record ``i``: where an error names it."""
        return self.topic, int(self.partitions[i]), int(self.offsets[i])

    def take(self, keep: Sequence[int] | np.ndarray) -> RawBatch:
        """The records at positions ``keep``, every column filtered alike."""
        positions = np.asarray(keep, dtype=np.int64)
        indices = pa.array(positions, pa.int64())

        def pick(column):
            if isinstance(column, pa.Array):
                return column.take(indices)
            if isinstance(column, np.ndarray):
                return column[positions]
            return [column[i] for i in positions.tolist()]

        return RawBatch(
            self.topic,
            pick(self._values if self._values is not None else self._value_array),
            pick(self._keys if self._keys is not None else self._key_array),
            pick(self.timestamps_ms),
            pick(self.partitions),
            pick(self.offsets),
            None if self.headers is None else pick(self.headers),
        )


def _either(column) -> tuple[list | None, pa.Array | None]:
    if isinstance(column, pa.Array):
        return None, column
    return (column if isinstance(column, list) else list(column)), None


def _longest_in_array(array: pa.Array) -> int:
    longest = pc.max(pc.binary_length(array)).as_py()
    return longest or 0


def _longest_in_list(items: Sequence[bytes | None]) -> int:
    try:
        return max(map(len, cast("Sequence[bytes]", items)), default=0)
    except TypeError:  # tombstones or records without a key (None): the slower way
        return max((len(v) for v in items if v is not None), default=0)


UNREADABLE_HEADERS: list[tuple[str, bytes | None]] = [("\ufffd", None)]
"""A record's headers when the client library cannot read them (a name that is not
UTF-8 makes confluent-kafka's ``Message.headers()`` raise): the record is then a bad
one (``invalid_utf8``, detail ``header``) for a table with header columns. Compared by
identity. The native reader reads such names itself, with U+FFFD for the bad bytes."""

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
    #: whether ``decode_values`` takes the values as one Arrow ``large_binary`` array
    #: (no Python object per record) rather than a list of bytes
    reads_arrow: ClassVar[bool] = False

    def __init__(self, spec: DecoderSpec, arrow_schema: pa.Schema):
        self.spec = spec
        self.arrow_schema = arrow_schema

    @abc.abstractmethod
    def decode_values(
        self, values: list[bytes], locate: Locator
    ) -> tuple[pa.Table, np.ndarray, list[DecodeError]]:
        """Decode non-null values into rows.

        ``values`` is a list of bytes, or a ``large_binary`` array without nulls
        for a decoder that ``reads_arrow``.

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
