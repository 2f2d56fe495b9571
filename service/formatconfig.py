"""The configuration of record formats: value formats and their options, the schema
registry, and the columns a table takes from keys, headers and Kafka metadata.

``service.config`` uses these models inside ``kafka:`` and each table; they live here
so that the table model stays readable. Column types default as follows when
``schema:`` does not name a column: key and header columns are ``string``,
``partition`` and ``offset`` ``integer``, ``timestamp`` ``datetime``, ``topic``
``string``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KNOWN_FORMATS = ("json", "avro", "protobuf", "csv", "arrow")
KEY_FORMATS = ("string", *KNOWN_FORMATS)
# Formats whose records carry a schema, so a table may leave out `schema:`.
SCHEMA_FORMATS = ("avro", "protobuf")

METADATA_TYPES = {
    "partition": "integer",
    "offset": "integer",
    "timestamp": "datetime",
    "topic": "string",
}

# Which format each option belongs to.
OPTION_FORMATS: dict[str, tuple[str, ...]] = {
    "schema": ("avro",),
    "schema_file": ("avro",),
    "descriptor_file": ("protobuf",),
    "message": ("protobuf",),
    "subject": ("avro", "protobuf"),
    "delimiter": ("csv",),
    "header": ("csv",),
    "columns": ("csv",),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RegistryAuth(_Strict):
    user: str
    password: str


class RegistryTls(_Strict):
    ca: str | None = Field(None, description="CA bundle (PEM) to verify the registry with")
    cert: str | None = Field(None, description="client certificate (PEM)")
    key: str | None = Field(None, description="client key (PEM)")

    @model_validator(mode="after")
    def _pair(self) -> RegistryTls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both cert and key, or neither")
        return self


class SchemaRegistryConfig(_Strict):
    """A Confluent-compatible schema registry (Confluent, Apicurio's ccompat API, ...)."""

    url: str
    basic_auth: RegistryAuth | None = None
    tls: RegistryTls | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {value!r}")
        return value.rstrip("/")


class FormatOptions(_Strict):
    """Options of a value (or key) format; each applies to the formats in OPTION_FORMATS."""

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
        errors = [
            f"format_options.{name} applies to {' and '.join(OPTION_FORMATS[name])} only, not {fmt}"
            for name in sorted(self.given())
            if fmt not in OPTION_FORMATS[name]
        ]
        if self.schema_ is not None and self.schema_file is not None:
            errors.append("format_options: give schema or schema_file, not both")
        if self.descriptor_file is not None and self.message is None:
            errors.append("format_options: descriptor_file needs message (the full name)")
        return errors

    def uses_registry(self, fmt: str) -> bool:
        """Whether records of this format are read through the schema registry."""
        if fmt == "avro":
            return self.schema_ is None and self.schema_file is None
        if fmt == "protobuf":
            return self.descriptor_file is None
        return False


class KeyConfig(_Strict):
    """The message key as columns: the whole key in ``column``, or ``fields`` of it."""

    format: str = "string"
    column: str | None = None
    fields: dict[str, str] | None = None
    format_options: FormatOptions = Field(default_factory=FormatOptions)

    @field_validator("format")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in KEY_FORMATS:
            raise ValueError(f"unknown key format {value!r}; known: {', '.join(KEY_FORMATS)}")
        return value

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


class MetadataConfig(_Strict):
    """Kafka metadata columns, each named by the column it fills."""

    partition: str | None = None
    offset: str | None = None
    timestamp: str | None = None
    topic: str | None = None

    def columns(self) -> dict[str, str]:
        """column -> metadata item"""
        return {col: item for item, col in self.model_dump().items() if col is not None}


def extra_columns(table: Any) -> dict[str, str]:
    """Columns filled from the key, headers and metadata, with their default types."""
    out: dict[str, str] = {}
    if table.key is not None:
        out.update(dict.fromkeys(table.key.columns, "string"))
    out.update(dict.fromkeys(table.headers, "string"))
    if table.metadata is not None:
        out.update({col: METADATA_TYPES[item] for col, item in table.metadata.columns().items()})
    return out


def add_extra_columns(data: Any) -> Any:
    """Before validation: put key/header/metadata columns into an explicit schema."""
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


def table_problems(table: Any) -> list[str]:
    """Cross-key checks of one table's format, fields, key, headers and metadata."""
    errors = table.format_options.problems(table.format)
    sources: dict[str, str] = {}
    for col in table.fields:
        sources[col] = "fields"
    for where, columns in (
        ("key", table.key.columns if table.key else []),
        ("headers", list(table.headers)),
        ("metadata", list(table.metadata.columns()) if table.metadata else []),
    ):
        for col in columns:
            if col in sources:
                errors.append(f"column {col!r} is filled from both {sources[col]} and {where}")
            sources[col] = where
    for col, path in table.fields.items():
        if not path or any(not part for part in path.split(".")):
            errors.append(f"fields.{col}: {path!r} is not a path like a.b.c")
    if table.schema_ is not None:
        errors.extend(
            f"fields.{col}: not a column of the schema"
            for col in table.fields
            if col not in table.schema_
        )
        # A value cannot be both a column and an object holding another column.
        paths = {
            c: table.fields.get(c, c)
            for c in table.schema_
            if c not in sources or c in table.fields
        }
        for col, path in paths.items():
            errors.extend(
                f"fields.{other}: {other_path!r} runs through {path!r}, the value of column {col!r}"
                for other, other_path in paths.items()
                if other_path.startswith(path + ".")
            )
    return errors
