"""Perspective column types and the Arrow types livetables decodes them into."""

from __future__ import annotations

import pyarrow as pa

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("ms"),
}


def arrow_schema(columns: dict[str, str]) -> pa.Schema:
    """The Arrow schema of a table whose config lists ``columns`` (name -> type)."""
    return pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind in columns.items()])
