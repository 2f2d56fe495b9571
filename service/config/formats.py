"""How a table reads its records: the value format and its options, and the columns a
table takes from message keys, headers and Kafka metadata.

Format names and the options each format reads come from the decoders
themselves (``connectors.decoders.DECODERS``): a new decoder is a new format
here without a list to keep in sync. Column types default as follows when
``schema:`` does not name a column: key and header columns are ``string``,
``partition`` and ``offset`` ``integer``, ``timestamp`` ``datetime``, ``topic``
``string``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import Field, field_validator, model_validator

from connectors.decoders import DECODERS
from connectors.spec import FormatOptions
from service.config.base import Strict

KEY_FORMATS = ("string", *DECODERS)

METADATA_TYPES = {
    "partition": "integer",
    "offset": "integer",
    "timestamp": "datetime",
    "topic": "string",
}


def known_format(value: str, known: Iterable[str], what: str = "format") -> str:
    """``value`` if it names a known format; else ValueError listing the known ones."""
    names = list(known)
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}; known: {', '.join(names)}")
    return value


def formats_reading(option: str) -> list[str]:
    """The formats whose decoder reads one of the ``format_options``."""
    return [name for name, decoder in DECODERS.items() if option in decoder.options]


def carries_schema(fmt: str) -> bool:
    """Whether records of a format carry a schema a table may take its columns from."""
    return DECODERS[fmt].carries_schema


class FormatOptionsConfig(Strict):
    """``format_options:`` of a value (or key) format; each option belongs to some formats."""

    schema_: dict[str, Any] | list[Any] | str | None = Field(
        None, alias="schema", description="avro: the writer schema, as a mapping or JSON text"
    )
    schema_file: str | None = Field(None, description="avro: a .avsc file holding the schema")
    descriptor_file: str | None = Field(
        None, description="protobuf: a FileDescriptorSet (protoc --descriptor_set_out)"
    )
    message: str | None = Field(
        None, description="protobuf: the full message name (with a registry: the one to derive)"
    )
    subject: str | None = Field(
        None, description="registry subject the table schema is derived from (<topic>-value)"
    )
    delimiter: str = Field(",", min_length=1, max_length=1)
    header: bool = Field(False, description="csv: each message starts with a header line")
    columns: list[str] | None = Field(None, description="csv: column names in field order")

    def given(self) -> set[str]:
        """The options set in the file, by their config names."""
        return {"schema" if name == "schema_" else name for name in self.model_fields_set}

    def problems(self, fmt: str) -> list[str]:
        errors = []
        for name in sorted(self.given()):
            owners = formats_reading(name)
            if fmt not in owners:
                errors.append(
                    f"format_options.{name} applies to {' and '.join(owners)} only, not {fmt}"
                )
        if self.schema_ is not None and self.schema_file is not None:
            errors.append("format_options: give schema or schema_file, not both")
        if self.descriptor_file is not None and self.message is None:
            errors.append("format_options: descriptor_file needs message (the full name)")
        return errors

    def spec(self) -> FormatOptions:
        """The options as the decoder takes them."""
        return FormatOptions(
            schema=self.schema_,
            schema_file=self.schema_file,
            descriptor_file=self.descriptor_file,
            message=self.message,
            subject=self.subject,
            delimiter=self.delimiter,
            header=self.header,
            columns=tuple(self.columns) if self.columns is not None else None,
        )

    def uses_registry(self, fmt: str) -> bool:
        """Whether records of this format are read through the schema registry."""
        return fmt in DECODERS and DECODERS[fmt].uses_registry(self.spec())


class KeyConfig(Strict):
    """The message key as columns: the whole key in ``column``, or ``fields`` of it."""

    format: str = "string"
    column: str | None = None
    fields: dict[str, str] | None = None
    format_options: FormatOptionsConfig = Field(default_factory=FormatOptionsConfig)

    @field_validator("format")
    @classmethod
    def _known(cls, value: str) -> str:
        return known_format(value, KEY_FORMATS, "key format")

    @model_validator(mode="after")
    def _one_target(self) -> KeyConfig:
        if (self.column is None) == (self.fields is None):
            raise ValueError("give the key a column, or fields (column: path in the key)")
        if self.format == "string" and self.fields is not None:
            raise ValueError("a string key has no fields: give column")
        errors = [] if self.format == "string" else self.format_options.problems(self.format)
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def columns(self) -> list[str]:
        return [self.column] if self.column is not None else list(self.fields or {})


class MetadataConfig(Strict):
    """Kafka metadata columns, each named by the column it fills."""

    partition: str | None = None
    offset: str | None = None
    timestamp: str | None = None
    topic: str | None = None

    def columns(self) -> dict[str, str]:
        """column -> metadata item"""
        return {col: item for item, col in self.model_dump().items() if col is not None}


def extra_columns(
    key: KeyConfig | None, headers: dict[str, str], metadata: MetadataConfig | None
) -> dict[str, str]:
    """Columns filled from the key, headers and metadata, with their default types."""
    out: dict[str, str] = {}
    if key is not None:
        out.update(dict.fromkeys(key.columns, "string"))
    out.update(dict.fromkeys(headers, "string"))
    if metadata is not None:
        out.update({col: METADATA_TYPES[item] for col, item in metadata.columns().items()})
    return out


def add_extra_columns(data: Any) -> Any:
    """Before validation: put key/header/metadata columns into an explicit schema.

    Runs on the raw mapping (before the key, headers and metadata are models), so
    it reads them defensively; what is malformed is reported by their own models.
    """
    if not isinstance(data, dict) or not isinstance(data.get("schema"), dict):
        return data
    extra: dict[str, str] = {}
    key = data.get("key")
    if isinstance(key, dict):
        if isinstance(key.get("column"), str):
            extra[key["column"]] = "string"
        if isinstance(key.get("fields"), dict):
            extra.update(dict.fromkeys(key["fields"], "string"))
    if isinstance(data.get("headers"), dict):
        extra.update(dict.fromkeys(data["headers"], "string"))
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        for item, col in metadata.items():
            if isinstance(col, str) and item in METADATA_TYPES:
                extra[col] = METADATA_TYPES[item]
    missing = {c: t for c, t in extra.items() if c not in data["schema"]}
    if not missing:
        return data
    return {**data, "schema": {**data["schema"], **missing}}
