"""One entry of ``tables:``: the topics a table reads, how, and what kind of table it is."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, PlainValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from connectors.decoders import DECODERS
from connectors.source import StartPolicy
from service.config.base import Strict
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

    _with_extra_columns = model_validator(mode="before")(add_extra_columns)

    @field_validator("schema_")
    @classmethod
    def _schema_required(cls, value: dict | None, info: Any) -> dict | None:
        fmt = info.data.get("format")
        if value is None and not (fmt in DECODERS and carries_schema(fmt)):
            raise PydanticCustomError("missing", "Field required")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return known_format(value, DECODERS)

    @model_validator(mode="after")
    def _consistent(self) -> TableConfig:
        if (self.topic is None) == (self.topics is None):
            raise ValueError("give exactly one of topic or topics")
        if self.topics is not None and not self.topics:
            raise ValueError("topics must list at least one topic")
        if self.index is not None and self.limit is not None:
            raise ValueError("index and limit cannot be combined (Perspective does not support it)")
        if self.index is not None and self.schema_ is not None and self.index not in self.schema_:
            raise ValueError(f"index {self.index!r} is not a column of the schema")
        problems = self._column_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

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
