"""What a decoder is told: format options, schema-registry settings, where each column is.

Plain frozen values. The service builds them from its configuration (which
validates them and names the key of any mistake); nothing here knows the
configuration file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FormatOptions:
    """Options of a value or key format; each decoder reads the ones it declares."""

    #: avro: the writer schema, as a mapping or JSON text
    schema: Any = None
    #: avro: a .avsc file holding the schema
    schema_file: str | None = None
    #: protobuf: a FileDescriptorSet (``protoc --descriptor_set_out``)
    descriptor_file: str | None = None
    #: protobuf: the full message name
    message: str | None = None
    #: the registry subject the table's columns were derived from
    subject: str | None = None
    #: csv: the field delimiter
    delimiter: str = ","
    #: csv: each message starts with a header line
    header: bool = False
    #: csv: column names in field order
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RegistrySettings:
    """A Confluent-compatible schema registry and how to reach it (hashable: one client each)."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class DecoderSpec:
    """What one decoder reads: a format with its options, and where each column is.

    ``paths`` maps a column to its path inside the record (``("price", "last")``);
    an empty path means the whole decoded value (a key that is a plain string or
    number). ``subject`` is the registry subject of the record schema the table
    was derived from (avro and protobuf through a registry).
    """

    format: str
    options: FormatOptions
    paths: Mapping[str, tuple[str, ...]]
    registry: RegistrySettings | None = None
    subject: str | None = None


@dataclass(frozen=True)
class TableDecodeSpec:
    """Everything the batch decoder of one table needs, with its columns resolved.

    ``columns`` are every column of the table (name -> Perspective type) in table
    order. The value's decoder fills those not taken from the message key
    (``key_columns``, decoded by ``key``, or the key as one string column when
    ``key`` is None), headers (column -> header name) or Kafka metadata (column ->
    ``partition`` | ``offset`` | ``timestamp`` | ``topic``).
    """

    columns: Mapping[str, str]
    value: DecoderSpec
    key_columns: tuple[str, ...] = ()
    key: DecoderSpec | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    index: str | None = None
    limit: int | None = None

    @property
    def extra_columns(self) -> frozenset[str]:
        """Columns that do not come from the record's value."""
        return frozenset((*self.key_columns, *self.headers, *self.metadata))

    @property
    def keeps_keys(self) -> bool:
        """Whether rows hold the message key (as the index or as columns)."""
        return self.index is not None or bool(self.key_columns)
