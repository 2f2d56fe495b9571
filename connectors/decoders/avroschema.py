"""Avro schemas: loading them, walking them, and what Perspective columns they make.

A table may take its columns from an Avro record schema (:class:`AvroRecordSchema`):
nested records are flattened (``price.last`` becomes column ``price_last``), and a
field no Perspective column can hold is an error naming it. The decoder
(``avro.py``) reads records with the same walking functions.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from connectors.registry import RegisteredSchema
from connectors.spec import FormatOptions


class AvroSchemaError(ValueError):
    """An Avro schema that cannot become (or feed) the table's columns."""


#: Avro logical types that become Arrow dates and timestamps
TIMESTAMP_LOGICAL_TYPES = {
    "timestamp-millis": pa.timestamp("ms"),
    "timestamp-micros": pa.timestamp("us"),
    "timestamp-nanos": pa.timestamp("ns"),
    "local-timestamp-millis": pa.timestamp("ms"),
    "local-timestamp-micros": pa.timestamp("us"),
    "local-timestamp-nanos": pa.timestamp("ns"),
    "date": pa.date32(),
}


#: ... and the time logical types, decoded as plain numbers and converted by Arrow
TIME_LOGICAL_TYPES = {
    **TIMESTAMP_LOGICAL_TYPES,
    "time-millis": pa.int32(),
    "time-micros": pa.int64(),
}


def avro_kind(schema: Any) -> str:
    """An Avro schema's kind: its type name, or union for a list."""
    if isinstance(schema, dict):
        return str(schema.get("type"))
    if isinstance(schema, list):
        return "union"
    return str(schema)


def is_record(schema: Any) -> bool:
    return avro_kind(schema) in ("record", "error")


def field_named(record: Any, name: str | set[str]) -> dict | None:
    """The field of a record schema with that name (or any of those names), or None."""
    names = {name} if isinstance(name, str) else name
    return next((f for f in record.get("fields", []) if f["name"] in names), None)


def load_schema(options: FormatOptions) -> Any:
    """The plain-Avro schema given in ``format_options`` (mapping, JSON text or file)."""
    if options.schema_file is not None:
        try:
            text = Path(options.schema_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise AvroSchemaError(f"cannot read schema_file: {exc.strerror or exc}") from None
        return _json(text, "schema_file")
    if isinstance(options.schema, str):
        return _json(options.schema, "schema")
    return options.schema


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AvroSchemaError(f"{where} is not a JSON Avro schema: {exc}") from None


def named_types(schema: Any, out: dict[str, Any] | None = None, namespace: str = "") -> dict:
    """Collect named types (records, enums, fixed) so references by name resolve."""
    out = {} if out is None else out
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, out, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and "name" in schema:
            ns = schema.get("namespace", namespace)
            name = schema["name"]
            full = name if "." in name or not ns else f"{ns}.{name}"
            out[full] = schema
            out.setdefault(name, schema)
            namespace = ns
        if is_record(schema):
            for f in schema.get("fields", []):
                named_types(f.get("type"), out, namespace)
        elif kind == "array":
            named_types(schema.get("items"), out, namespace)
        elif kind == "map":
            named_types(schema.get("values"), out, namespace)
        elif isinstance(kind, (dict, list)):
            named_types(kind, out, namespace)
    return out


def resolve(schema: Any, named: dict[str, Any]) -> tuple[Any, bool]:
    """(the type without a null branch, nullable?) with names resolved."""
    nullable = False
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        nullable = len(branches) < len(schema)
        if len(branches) != 1:
            return schema, nullable
        schema = branches[0]
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list, str)):
        inner = schema["type"]
        if isinstance(inner, (dict, list)) or (isinstance(inner, str) and inner in named):
            resolved, inner_nullable = resolve(inner, named)
            return resolved, nullable or inner_nullable
    return schema, nullable


def perspective_type(schema: Any) -> str | None:
    """The Perspective column type of a (resolved, non-null) Avro type, or None."""
    kind = avro_kind(schema)
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical in ("timestamp-millis", "timestamp-micros", "timestamp-nanos") or (
        logical and logical.startswith("local-timestamp")
    ):
        return "datetime"
    if logical == "date":
        return "date"
    if logical == "decimal":
        return "float"
    return {
        "boolean": "boolean",
        "int": "integer",
        "long": "integer",
        "float": "float",
        "double": "float",
        "string": "string",
        "enum": "string",
    }.get(kind)


def describe(schema: Any) -> str:
    """An Avro type in words, for errors."""
    if isinstance(schema, list):
        return "union of " + ", ".join(describe(b) for b in schema)
    return repr(avro_kind(schema))


def strip_time_logical(schema: Any) -> Any:
    """A copy of the schema whose time logical types decode as plain numbers."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if node.get("logicalType") in TIME_LOGICAL_TYPES:
                node["logicalType"] = "livetables-raw-" + str(node["logicalType"])
            for value in node.values():
                if isinstance(value, (dict, list)):
                    walk(value)

    walk(schema)
    return schema


class AvroRecordSchema:
    """An Avro record schema seen as Perspective columns."""

    def __init__(self, schema: Any):
        self.schema = schema
        self.named = named_types(schema)

    def columns(self) -> tuple[dict[str, str], dict[str, str]]:
        """Columns of the record: (column -> type, column -> path for nested ones).

        Nested records are flattened (``price.last`` becomes column ``price_last``).
        Raises AvroSchemaError naming the first field no Perspective column can hold.
        """
        root, _ = resolve(self.schema, self.named)
        if not is_record(root):
            raise AvroSchemaError(f"the schema is a {avro_kind(root)}, not a record")
        columns: dict[str, str] = {}
        paths: dict[str, str] = {}

        def walk(record: Any, prefix: tuple[str, ...]) -> None:
            for f in record.get("fields", []):
                path = (*prefix, f["name"])
                resolved, _ = resolve(f["type"], self.named)
                if is_record(resolved):
                    walk(resolved, path)
                    continue
                kind = perspective_type(resolved)
                if kind is None:
                    raise AvroSchemaError(
                        f"field {'.'.join(path)!r} has Avro type {describe(resolved)}, which no "
                        "Perspective column can hold; list the columns you want in schema: "
                        "(and fields: for nested ones)"
                    )
                name = "_".join(path)
                columns[name] = kind
                if len(path) > 1:
                    paths[name] = ".".join(path)

        walk(root, ())
        return columns, paths

    def path_type(self, path: tuple[str, ...]) -> str | None:
        """The Perspective type at ``path`` in the record (None if absent or unmappable)."""
        node, _ = resolve(self.schema, self.named)
        for part in path:
            match = field_named(node, part) if is_record(node) else None
            if match is None:
                return None
            node, _ = resolve(match["type"], self.named)
        return perspective_type(node)


def writer_schema(registered: RegisteredSchema) -> Any:
    """A registered Avro schema as fastavro takes it: referenced named types inlined."""
    main = json.loads(registered.text)
    if not registered.references:
        return main
    # Named types defined in referenced schemas: parse them first, in order.
    return inline_references([*map(json.loads, registered.references.values()), main])


def inline_references(schemas: list[Any]) -> Any:
    """A writer schema whose referenced named types are defined inline (fastavro needs that)."""
    *referenced, main = schemas
    named: dict[str, Any] = {}
    for schema in referenced:
        named_types(schema, named)
    seen: set[str] = set()

    def walk(node: Any) -> Any:
        if isinstance(node, str) and node in named and node not in seen:
            seen.add(node)
            return walk(copy.deepcopy(named[node]))
        if isinstance(node, list):
            return [walk(n) for n in node]
        if isinstance(node, dict):
            return {
                k: walk(v) if k in ("type", "items", "values", "fields") else v
                for k, v in node.items()
            }
        return node

    return walk(main)
