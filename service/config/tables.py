"""One entry of ``tables:``: the topics a table reads, how, and what kind of table it is."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, PlainValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from connectors.decoders import DECODERS
from connectors.source import StartPolicy
from service.config.base import Strict
from service.config.derived import KEY_COLUMN, DerivedViewConfig, key_column
from service.config.durations import Duration, parse_duration
from service.config.formats import (
    FormatOptionsConfig,
    KeyConfig,
    MetadataConfig,
    add_extra_columns,
    carries_schema,
    extra_columns,
    known_format,
)

ColumnType = Literal["string", "integer", "float", "boolean", "date", "datetime"]
"""The column types a Perspective table knows."""

TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")

#: The internal index of an append table with retention: one number per row, in arrival order.
ROW_COLUMN = "__row__"
#: The Kafka timestamp of each row, carried from the decoder to the writer of a table whose
#: rows age out by it; it never reaches the table.
TIMESTAMP_COLUMN = "__ts__"
#: Column names livetables keeps for itself.
RESERVED_COLUMNS = frozenset({KEY_COLUMN, ROW_COLUMN, TIMESTAMP_COLUMN})

# Keys that describe how a table is fed from Kafka, which a derived table is not.
FEED_KEYS = (
    "topic",
    "topics",
    "format",
    "schema_",
    "index",
    "limit",
    "start",
    "editable",
    "dead_letter_topic",
    "max_record_bytes",
    "format_options",
    "fields",
    "key",
    "headers",
    "metadata",
    "retention",
    "retention_column",
)


def _start_policy(value: Any) -> StartPolicy:
    if isinstance(value, StartPolicy):
        return value
    if not isinstance(value, str):
        raise ValueError(f"start must be a string like earliest, latest or -15m, not {value!r}")
    return StartPolicy(value)


Start = Annotated[
    StartPolicy,
    PlainValidator(_start_policy),
    PlainSerializer(str, return_type=str),
    Field(description="earliest | latest | -<duration> (-15m, -2h)"),
]


class TableConfig(Strict):
    # A derived table: the live result of ``view`` over the table ``from`` (see derived.py).
    from_: str | None = Field(None, alias="from")
    view: DerivedViewConfig | None = None
    refresh: Duration = Field(
        default_factory=lambda: parse_duration("250ms"),
        description="a derived table follows its source within this delay",
    )
    topic: str | None = None
    topics: list[str] | None = None
    format: str = "json"
    # Optional for formats whose records carry a schema: then derived at start-up.
    schema_: dict[str, ColumnType] | None = Field(
        None, alias="schema", min_length=1, validate_default=True
    )
    index: str | None = None
    limit: int | None = Field(None, gt=0)
    start: Start = StartPolicy("earliest")
    editable: bool = False
    dead_letter_topic: str | None = None
    max_record_bytes: int = Field(1024 * 1024, gt=0)
    format_options: FormatOptionsConfig = Field(default_factory=FormatOptionsConfig)
    fields: dict[str, str] = Field(default_factory=dict, description="column: path.in.record")
    key: KeyConfig | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="column: header name")
    metadata: MetadataConfig | None = None
    # Rows older than this are dropped, by the Kafka record timestamp or ``retention_column``.
    retention: Duration | None = None
    retention_column: str | None = None

    _with_extra_columns = model_validator(mode="before")(add_extra_columns)

    @field_validator("schema_")
    @classmethod
    def _schema_required(cls, value: dict | None, info: Any) -> dict | None:
        fmt = info.data.get("format")
        if info.data.get("from_") is not None:
            return value  # a derived table: its columns come from its view (checked after)
        if value is None and not (fmt in DECODERS and carries_schema(fmt)):
            raise PydanticCustomError("missing", "Field required")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return known_format(value, DECODERS)

    @model_validator(mode="after")
    def _consistent(self) -> TableConfig:
        if self.from_ is not None:
            return self._derived_consistent()
        if self.view is not None or "refresh" in self.model_fields_set:
            raise ValueError("view and refresh belong to a derived table: give from: SOURCE")
        if (self.topic is None) == (self.topics is None):
            raise ValueError("give exactly one of topic or topics")
        if self.topics is not None and not self.topics:
            raise ValueError("topics must list at least one topic")
        if self.index is not None and self.limit is not None:
            raise ValueError("index and limit cannot be combined (Perspective does not support it)")
        if self.index is not None and self.schema_ is not None and self.index not in self.schema_:
            raise ValueError(f"index {self.index!r} is not a column of the schema")
        problems = [*self._column_problems(), *self._retention_problems()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _derived_consistent(self) -> TableConfig:
        """A derived table names its source and view, and nothing about Kafka."""
        given = [k for k in FEED_KEYS if k in self.model_fields_set]
        if given:
            names = ", ".join("schema" if k == "schema_" else k for k in given)
            raise ValueError(
                f"a derived table (from: {self.from_}) takes its rows from its source: "
                f"remove {names}"
            )
        if self.view is None:
            raise ValueError(f"a derived table (from: {self.from_}) needs a view:")
        return self

    def _retention_problems(self) -> list[str]:
        errors = []
        if self.retention_column is not None:
            if self.retention is None:
                errors.append("retention_column needs retention (how long rows are kept)")
            elif self.schema_ is not None:
                kind = self.schema_.get(self.retention_column)
                if kind is None:
                    errors.append(
                        f"retention_column {self.retention_column!r} is not a column of the schema"
                    )
                elif kind != "datetime":
                    errors.append(
                        f"retention_column {self.retention_column!r} is a {kind} column; "
                        "it must be a datetime"
                    )
        if self.retention is not None and self.editable:
            errors.append(
                "retention and editable cannot be combined (rows clients write would never age out)"
            )
        reserved = sorted(RESERVED_COLUMNS & set(self.schema_ or {}))
        errors.extend(f"column {c!r} is a name livetables keeps for itself" for c in reserved)
        return errors

    def _column_problems(self) -> list[str]:
        """Cross-key checks of the format, fields, key, headers and metadata."""
        errors = self.format_options.problems(self.format)
        sources: dict[str, str] = dict.fromkeys(self.fields, "fields")
        for where, columns in (
            ("key", self.key.columns if self.key else []),
            ("headers", list(self.headers)),
            ("metadata", list(self.metadata.columns()) if self.metadata else []),
        ):
            for col in columns:
                if col in sources:
                    errors.append(f"column {col!r} is filled from both {sources[col]} and {where}")
                sources[col] = where
        for col, path in self.fields.items():
            if not path or any(not part for part in path.split(".")):
                errors.append(f"fields.{col}: {path!r} is not a path like a.b.c")
        if self.schema_ is None:
            return errors
        errors.extend(
            f"fields.{col}: not a column of the schema"
            for col in self.fields
            if col not in self.schema_
        )
        # A value cannot be both a column and an object holding another column.
        paths = {
            c: self.fields.get(c, c) for c in self.schema_ if c not in sources or c in self.fields
        }
        for col, path in paths.items():
            errors.extend(
                f"fields.{other}: {other_path!r} runs through {path!r}, the value of column {col!r}"
                for other, other_path in paths.items()
                if other_path.startswith(path + ".")
            )
        return errors

    @property
    def columns(self) -> dict[str, ColumnType]:
        """The table's published columns, known for every table of a resolved configuration.

        ``schema_`` is unset before resolution for a table whose columns come from its
        record schema or its view; whatever runs a table reads its columns here.
        """
        if self.schema_ is None:
            raise ValueError(
                "the table's columns are not known yet: resolve the configuration first"
            )
        return self.schema_

    @property
    def derived(self) -> bool:
        """A table computed from another table (``from:``), not fed from Kafka."""
        return self.from_ is not None

    @property
    def row_ids(self) -> bool:
        """An append table whose rows age out: indexed internally on :data:`ROW_COLUMN`.

        Perspective removes rows by index only, so an append table with retention
        gets one: each row a number in arrival order, and its ``limit`` is kept by
        removing the oldest numbers, not by the engine's rolling window.
        """
        return self.retention is not None and self.index is None and not self.derived

    @property
    def kafka_timestamps(self) -> bool:
        """Rows age out by their Kafka record timestamp (carried in :data:`TIMESTAMP_COLUMN`)."""
        return self.retention is not None and self.retention_column is None

    @property
    def engine_index(self) -> str | None:
        """The column the hosted Perspective table is indexed on."""
        if self.derived:
            assert self.view is not None  # a derived table has one: see _derived_consistent
            return key_column(self.view, self.columns)
        return ROW_COLUMN if self.row_ids else self.index

    @property
    def engine_limit(self) -> int | None:
        """The engine's rolling window (None where livetables keeps the limit itself)."""
        return None if self.row_ids else self.limit

    @property
    def engine_schema(self) -> dict[str, str]:
        """The hosted table's columns: the published ones, then the internal ones."""
        schema: dict[str, str] = dict(self.columns)
        index = self.engine_index
        if index == ROW_COLUMN:
            schema[ROW_COLUMN] = "float"  # exact to 2^53 rows; an integer column has 32 bits
        elif index == KEY_COLUMN:
            schema[KEY_COLUMN] = "string"
        return schema

    @property
    def hidden_columns(self) -> list[str]:
        """Internal columns clients see in the engine's schema; pages leave them out."""
        return [c for c in self.engine_schema if c not in self.columns]

    @property
    def topic_list(self) -> list[str]:
        return [self.topic] if self.topic is not None else list(self.topics or [])

    @property
    def extra_columns(self) -> dict[str, str]:
        """Columns filled from the key, headers and metadata, with their default types."""
        return extra_columns(self.key, self.headers, self.metadata)

    def uses_registry(self) -> bool:
        """Whether the value or the key is read through the schema registry."""
        key = self.key
        return self.format_options.uses_registry(self.format) or (
            key is not None and key.format_options.uses_registry(key.format)
        )
