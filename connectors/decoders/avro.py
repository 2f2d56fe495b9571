"""Avro values: the Confluent wire format through a schema registry, or plain Avro.

Framed records (magic byte 0, 4-byte schema id) are grouped by schema id; each
writer schema is fetched once from the registry and kept. Plain records are
the schemaless binary encoding of the schema given in ``format_options``.

Schema evolution: every writer schema is resolved against the reader schema
(through a registry: the subject's latest version when the table starts) and
mapped onto the table's columns by field name or ``fields:`` path, so records
written with an older or a newer compatible schema land in the same columns.
As in Avro's own resolution, a field the writer does not have takes the reader
field's default (null without one), a reader field's aliases find a renamed
writer field, a field the table does not have is skipped, and a promoted type
(int to long, float to double) is cast to the column's type.

fastavro decodes one record per call (``schemaless_reader``), so this module
keeps a tight Python loop over the values: one reader call per record, then
one list comprehension per column and a single Arrow conversion per column.
Timestamp and date logical types are decoded as plain numbers and converted
by Arrow, which is several times cheaper than Python datetime objects.
Measured with ``python -m bench.formats``.
"""

from __future__ import annotations

import copy
import json
from io import BytesIO
from operator import itemgetter
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa

from connectors.base import DecodeError, Decoder
from connectors.decoders.avrocolumns import (
    TIMESTAMP_LOGICAL_TYPES,
    ColumnarReader,
    Unsupported,
    avro_kind,
)
from connectors.decoders.columns import CAST_ERRORS, coerce_columns, drop_failed, merge_pieces
from connectors.registry import (
    RegisteredSchema,
    RegistryUnavailable,
    UnknownSchema,
    registry_for,
    wire_ids,
)

_TIME_LOGICAL = {**TIMESTAMP_LOGICAL_TYPES, "time-millis": pa.int32(), "time-micros": pa.int64()}
_PRIMITIVE_ARROW = {
    "boolean": pa.bool_(),
    "int": pa.int64(),
    "long": pa.int64(),
    "float": pa.float64(),
    "double": pa.float64(),
    "string": pa.string(),
    "bytes": pa.binary(),
    "enum": pa.string(),
    "fixed": pa.binary(),
}


class AvroSchemaError(ValueError):
    """An Avro schema that cannot become (or feed) the table's columns."""


def load_schema(options) -> Any:
    """The plain-Avro schema given in ``format_options`` (mapping, JSON text or file)."""
    if options.schema_file is not None:
        try:
            text = Path(options.schema_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise AvroSchemaError(f"cannot read schema_file: {exc.strerror or exc}") from None
        return _json(text, "schema_file")
    if isinstance(options.schema_, str):
        return _json(options.schema_, "schema")
    return options.schema_


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AvroSchemaError(f"{where} is not a JSON Avro schema: {exc}") from None


# -- walking schemas -------------------------------------------------------------


def _named_types(schema: Any, out: dict[str, Any], namespace: str = "") -> None:
    """Collect named types (records, enums, fixed) so references by name resolve."""
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, out, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and "name" in schema:
            ns = schema.get("namespace", namespace)
            name = schema["name"]
            full = name if "." in name or not ns else f"{ns}.{name}"
            out[full] = schema
            out.setdefault(name, schema)
            namespace = ns
        if kind in ("record", "error"):
            for f in schema.get("fields", []):
                _named_types(f.get("type"), out, namespace)
        elif kind == "array":
            _named_types(schema.get("items"), out, namespace)
        elif kind == "map":
            _named_types(schema.get("values"), out, namespace)
        elif isinstance(kind, (dict, list)):
            _named_types(kind, out, namespace)


def _resolve(schema: Any, named: dict[str, Any]) -> tuple[Any, bool]:
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
            resolved, inner_nullable = _resolve(inner, named)
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


def derive_columns(schema: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Columns of a record schema: (column -> type, column -> path for nested ones).

    Nested records are flattened (``price.last`` becomes column ``price_last``).
    Raises AvroSchemaError naming the first field no Perspective column can hold.
    """
    named: dict[str, Any] = {}
    _named_types(schema, named)
    root, _ = _resolve(schema, named)
    if avro_kind(root) not in ("record", "error"):
        raise AvroSchemaError(f"the schema is a {avro_kind(root)}, not a record")
    columns: dict[str, str] = {}
    paths: dict[str, str] = {}

    def walk(record: Any, prefix: tuple[str, ...]) -> None:
        for f in record.get("fields", []):
            path = (*prefix, f["name"])
            resolved, _ = _resolve(f["type"], named)
            if avro_kind(resolved) in ("record", "error"):
                walk(resolved, path)
                continue
            kind = perspective_type(resolved)
            if kind is None:
                raise AvroSchemaError(
                    f"field {'.'.join(path)!r} has Avro type {_describe(resolved)}, which no "
                    "Perspective column can hold; list the columns you want in schema: "
                    "(and fields: for nested ones)"
                )
            name = "_".join(path)
            columns[name] = kind
            if len(path) > 1:
                paths[name] = ".".join(path)

    walk(root, ())
    return columns, paths


def path_type(schema: Any, path: tuple[str, ...]) -> str | None:
    """The Perspective type at ``path`` in a record schema (None if absent or unmappable)."""
    named: dict[str, Any] = {}
    _named_types(schema, named)
    node, _ = _resolve(schema, named)
    for part in path:
        if avro_kind(node) not in ("record", "error"):
            return None
        match = next((f for f in node.get("fields", []) if f["name"] == part), None)
        if match is None:
            return None
        node, _ = _resolve(match["type"], named)
    return perspective_type(node)


def _describe(schema: Any) -> str:
    if isinstance(schema, list):
        return "union of " + ", ".join(_describe(b) for b in schema)
    return repr(avro_kind(schema))


def _strip_time_logical(schema: Any) -> Any:
    """A copy of the schema whose time logical types decode as plain numbers."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if node.get("logicalType") in _TIME_LOGICAL:
                node["logicalType"] = "livetables-raw-" + str(node["logicalType"])
            for value in node.values():
                if isinstance(value, (dict, list)):
                    walk(value)

    walk(schema)
    return schema


# -- reading ------------------------------------------------------------------------


class _Plan:
    """How to read records of one writer schema into the table's columns."""

    def __init__(
        self, writer: Any, paths: dict[str, tuple[str, ...]], skip: int, reader: Any = None
    ):
        self.skip = skip
        self.parsed = fastavro.parse_schema(_strip_time_logical(writer))
        named: dict[str, Any] = {}
        _named_types(writer, named)
        # Reader paths (the table's) as writer paths, or a reader default where absent.
        writer_paths: list[tuple[str, ...]] = []
        self.defaults: list[tuple[bool, Any]] = []
        for path in paths.values():
            found, default = _writer_path(writer, reader, path)
            writer_paths.append(found if found is not None else path)
            self.defaults.append(default)
        self.getters: list[Any] = []
        self.types: list[pa.DataType | None] = []
        for path in writer_paths:
            getter, arrow_type = _column_reader(writer, named, path)
            self.getters.append(getter)
            self.types.append(arrow_type)
        try:
            self.columnar: ColumnarReader | None = ColumnarReader(writer, named, writer_paths)
        except Unsupported:
            self.columnar = None

    def fill_defaults(self, arrays: list[pa.Array | None], n: int) -> list[pa.Array]:
        """Columns the writer lacks: the reader's default, else null."""
        out = []
        for array, (has_default, default) in zip(arrays, self.defaults, strict=True):
            if array is None:
                out.append(pa.array([default] * n) if has_default else pa.nulls(n))
            else:
                out.append(array)
        return out


def _writer_path(writer: Any, reader: Any, path: tuple[str, ...]):
    """(the writer's path for a reader path, (has default?, default)).

    Follows reader field aliases to renamed writer fields; a reader field the
    writer lacks yields its default, if it has one.
    """
    none = (False, None)
    if reader is None or not path:
        return path, none
    named_w: dict[str, Any] = {}
    named_r: dict[str, Any] = {}
    _named_types(writer, named_w)
    _named_types(reader, named_r)
    w_node, _ = _resolve(writer, named_w)
    r_node, _ = _resolve(reader, named_r)
    found: list[str] = []
    for depth, part in enumerate(path):
        r_field = None
        if avro_kind(r_node) in ("record", "error"):
            r_field = next((f for f in r_node.get("fields", []) if f["name"] == part), None)
        if avro_kind(w_node) not in ("record", "error"):
            return None, none
        names = {part, *((r_field or {}).get("aliases") or [])}
        w_field = next((f for f in w_node.get("fields", []) if f["name"] in names), None)
        if w_field is None:
            last = depth == len(path) - 1
            if last and r_field is not None and "default" in r_field:
                return None, (True, r_field["default"])
            return None, none
        found.append(w_field["name"])
        w_node, _ = _resolve(w_field["type"], named_w)
        r_node = _resolve(r_field["type"], named_r)[0] if r_field is not None else None
    return tuple(found), none


def _column_reader(writer: Any, named: dict[str, Any], path: tuple[str, ...]):
    """(getter from a decoded record, Arrow type of the values), or (None, None) if absent."""
    node, _ = _resolve(writer, named)
    if not path:
        return (lambda r: r), _arrow_type(node)
    optional_parent = False
    for depth, part in enumerate(path):
        if avro_kind(node) not in ("record", "error"):
            return None, None
        match = next((f for f in node.get("fields", []) if f["name"] == part), None)
        if match is None:
            return None, None
        node, nullable = _resolve(match["type"], named)
        if nullable and depth < len(path) - 1:
            optional_parent = True
    if len(path) == 1:
        return itemgetter(path[0]), _arrow_type(node)

    def nested(record: dict, path: tuple[str, ...] = path) -> Any:
        for part in path:
            if record is None:
                return None
            record = record[part]
        return record

    if not optional_parent:
        head, *rest = path
        if len(rest) == 1:
            (leaf,) = rest
            return (lambda r: r[head][leaf]), _arrow_type(node)
    return nested, _arrow_type(node)


def _arrow_type(schema: Any) -> pa.DataType | None:
    if isinstance(schema, dict) and schema.get("logicalType") in _TIME_LOGICAL:
        return _TIME_LOGICAL[schema["logicalType"]]
    if isinstance(schema, dict) and schema.get("logicalType") == "decimal":
        return None  # Decimal objects: let Arrow infer
    return _PRIMITIVE_ARROW.get(avro_kind(schema))


class AvroDecoder(Decoder):
    name = "avro"

    def __init__(self, spec, arrow_schema):
        super().__init__(spec, arrow_schema)
        self._paths = {f.name: spec.paths.get(f.name, (f.name,)) for f in arrow_schema}
        self._registry = None
        self._plain: _Plan | None = None
        self._plans: dict[int, _Plan | Exception] = {}
        self._reader: Any = None
        if spec.options.uses_registry("avro"):
            if spec.registry is None:
                raise AvroSchemaError("avro without a schema needs kafka.schema_registry")
            self._registry = registry_for(spec.registry)
            self._reader = self._latest(spec.subject)
        else:
            self._plain = _Plan(load_schema(spec.options), self._paths, skip=0)

    def _latest(self, subject: str | None) -> Any:
        """The reader schema: the subject's latest version now, if the registry has one."""
        assert self._registry is not None
        try:
            registered = self._registry.latest(subject) if subject else None
        except (UnknownSchema, RegistryUnavailable):
            return None
        if registered is None or registered.schema_type != "AVRO":
            return None
        main = json.loads(registered.text)
        if registered.references:
            return inline_references([*map(json.loads, registered.references.values()), main])
        return main

    def _plan(self, schema_id: int) -> _Plan:
        plan = self._plans.get(schema_id)
        if isinstance(plan, _Plan):
            return plan
        assert self._registry is not None
        registered: RegisteredSchema = self._registry.schema(schema_id)
        if registered.schema_type != "AVRO":
            raise UnknownSchema(f"schema id {schema_id} is {registered.schema_type}, not AVRO")
        writer = json.loads(registered.text)
        if registered.references:
            # Named types defined in referenced schemas: parse them first, in order.
            writer = [*(json.loads(t) for t in registered.references.values()), writer]
            writer = inline_references(writer)
        plan = _Plan(writer, self._paths, skip=5, reader=self._reader)
        self._plans[schema_id] = plan
        return plan

    def decode_values(self, values, locate):
        errors: list[DecodeError] = []
        if self._plain is not None:
            groups = [(self._plain, np.arange(len(values), dtype=np.int64))]
        else:
            groups = self._group_by_schema(values, locate, errors)
        pieces: list[tuple[pa.Table, np.ndarray]] = []
        for plan, positions in groups:
            rows, kept = self._read(plan, values, positions, locate, errors)
            if rows.num_rows:
                pieces.append((rows, kept))
        rows, positions = merge_pieces(pieces, self.arrow_schema)
        return rows, positions, errors

    def _group_by_schema(self, values, locate, errors) -> list[tuple[_Plan, np.ndarray]]:
        ids, framed = wire_ids(values)
        for i in np.flatnonzero(~framed):
            errors.append(
                DecodeError(*locate(int(i)), "bad_framing", "not in the schema registry framing")
            )
        groups = []
        framed_ids = ids[framed]
        positions = np.flatnonzero(framed)
        for schema_id in np.unique(framed_ids):
            members = positions[framed_ids == schema_id]
            try:
                plan = self._plan(int(schema_id))
            except (UnknownSchema, RegistryUnavailable, AvroSchemaError, ValueError) as exc:
                reason = (
                    "registry_unavailable"
                    if isinstance(exc, RegistryUnavailable)
                    else "unknown_schema"
                )
                errors.extend(DecodeError(*locate(int(i)), reason, str(exc)[:200]) for i in members)
                continue
            groups.append((plan, members))
        return groups

    def _read(self, plan: _Plan, values, positions, locate, errors):
        """Decode the values at ``positions`` with one plan."""
        if plan.columnar is not None:
            subset = values if len(positions) == len(values) else [values[i] for i in positions]
            try:
                arrays, good = plan.columnar.read(subset, plan.skip)
            except (*CAST_ERRORS, pa.ArrowException):
                pass  # invalid UTF-8 somewhere: find it record by record below
            else:
                arrays, positions, failed = drop_failed(arrays, good, positions)
                errors.extend(
                    DecodeError(*locate(int(i)), "invalid_avro", "does not match its schema")
                    for i in failed
                )
                arrays = plan.fill_defaults(arrays, len(positions))
                return self._typed(arrays, positions, locate, errors)
        return self._read_one_by_one(plan, values, positions, locate, errors)

    def _read_one_by_one(self, plan: _Plan, values, positions, locate, errors):
        """The per-record loop, for schemas the columnar reader leaves out."""
        reader = fastavro.schemaless_reader
        parsed, skip = plan.parsed, plan.skip
        records: list[Any] = []
        append = records.append
        bad: list[int] = []
        for i in positions.tolist():
            value = values[i]
            stream = BytesIO(value)
            if skip:
                stream.seek(skip)
            try:
                append(reader(stream, parsed, None))
            except Exception as exc:  # any decoding failure is this record's
                bad.append(i)
                # fastavro decodes strings with bytes.decode: a string not UTF-8 raises here.
                reason = "invalid_utf8" if isinstance(exc, UnicodeDecodeError) else "invalid_avro"
                errors.append(DecodeError(*locate(i), reason, str(exc)[:200]))
                continue
            if stream.tell() != len(value):
                records.pop()
                bad.append(i)
                errors.append(
                    DecodeError(*locate(i), "invalid_avro", "trailing bytes after the record")
                )
        if bad:
            positions = np.setdiff1d(positions, np.array(bad, dtype=np.int64))
        arrays = [
            None if getter is None else pa.array(list(map(getter, records)), arrow_type)
            for getter, arrow_type in zip(plan.getters, plan.types, strict=True)
        ]
        return self._typed(plan.fill_defaults(arrays, len(records)), positions, locate, errors)

    def _typed(self, arrays, positions, locate, errors):
        rows, keep, why = coerce_columns(arrays, self.arrow_schema)
        if keep is not None:
            dropped = positions[~keep]
            errors.extend(
                DecodeError(*locate(int(i)), "type_mismatch", w)
                for i, w in zip(dropped, why, strict=False)
            )
            positions = positions[keep]
        return rows, positions


def inline_references(schemas: list[Any]) -> Any:
    """A writer schema whose referenced named types are defined inline (fastavro needs that)."""
    *referenced, main = schemas
    named: dict[str, Any] = {}
    for schema in referenced:
        _named_types(schema, named)
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
