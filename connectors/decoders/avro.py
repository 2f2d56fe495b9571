"""Avro values: the Confluent wire format through a schema registry, or plain Avro.

Framed records (magic byte 0, 4-byte schema id) are grouped by schema id; each
writer schema is fetched once from the registry and kept (``framed.py``). Plain
records are the schemaless binary encoding of the schema given in
``format_options``.

Schema evolution: every writer schema is resolved against the reader schema
(through a registry: the subject's latest version when the table starts) and
mapped onto the table's columns by field name or ``fields:`` path, so records
written with an older or a newer compatible schema land in the same columns.
As in Avro's own resolution, a field the writer does not have takes the reader
field's default (null without one), a reader field's aliases find a renamed
writer field, a field the table does not have is skipped, and a promoted type
(int to long, float to double) is cast to the column's type.

A batch is read columnar with numpy when its schema allows
(``avrocolumns.py``); otherwise fastavro decodes one record per call
(``schemaless_reader``) in a tight Python loop, then one list comprehension
per column and a single Arrow conversion per column. Timestamp and date
logical types are decoded as plain numbers and converted by Arrow, which is
several times cheaper than Python datetime objects. Measured with
``python -m bench.formats``.
"""

from __future__ import annotations

from io import BytesIO
from operator import itemgetter
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa

from connectors.base import DecodeError, DecodeReason, Locator
from connectors.decoders.avrocolumns import ColumnarReader, Unsupported
from connectors.decoders.avroschema import (
    TIME_LOGICAL_TYPES,
    AvroRecordSchema,
    avro_kind,
    field_named,
    is_record,
    load_schema,
    named_types,
    resolve,
    strip_time_logical,
    writer_schema,
)
from connectors.decoders.framed import FramedDecoder
from connectors.registry import RegistryUnavailable, UnknownSchema

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


class _Plan:
    """How to read records of one writer schema into the table's columns."""

    def __init__(self, writer: Any, paths: dict[str, tuple[str, ...]], reader: Any = None):
        self.parsed = fastavro.parse_schema(strip_time_logical(writer))
        named = named_types(writer)
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

    def complete(self, arrays: list[pa.Array | None], n: int) -> list[pa.Array]:
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
    named_w, named_r = named_types(writer), named_types(reader)
    w_node, _ = resolve(writer, named_w)
    r_node, _ = resolve(reader, named_r)
    found: list[str] = []
    for depth, part in enumerate(path):
        r_field = field_named(r_node, part) if is_record(r_node) else None
        if not is_record(w_node):
            return None, none
        w_field = field_named(w_node, {part, *((r_field or {}).get("aliases") or [])})
        if w_field is None:
            last = depth == len(path) - 1
            if last and r_field is not None and "default" in r_field:
                return None, (True, r_field["default"])
            return None, none
        found.append(w_field["name"])
        w_node, _ = resolve(w_field["type"], named_w)
        r_node = resolve(r_field["type"], named_r)[0] if r_field is not None else None
    return tuple(found), none


def _column_reader(writer: Any, named: dict[str, Any], path: tuple[str, ...]):
    """(getter from a decoded record, Arrow type of the values), or (None, None) if absent."""
    node, _ = resolve(writer, named)
    if not path:
        return (lambda r: r), _arrow_type(node)
    optional_parent = False
    for depth, part in enumerate(path):
        match = field_named(node, part) if is_record(node) else None
        if match is None:
            return None, None
        node, nullable = resolve(match["type"], named)
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
    if isinstance(schema, dict) and schema.get("logicalType") in TIME_LOGICAL_TYPES:
        return TIME_LOGICAL_TYPES[schema["logicalType"]]
    if isinstance(schema, dict) and schema.get("logicalType") == "decimal":
        return None  # Decimal objects: let Arrow infer
    return _PRIMITIVE_ARROW.get(avro_kind(schema))


class AvroDecoder(FramedDecoder[_Plan]):
    name = "avro"
    options = frozenset({"schema", "schema_file", "subject"})
    schema_type = "AVRO"
    malformed = (DecodeReason.INVALID_AVRO, "does not match its schema")

    @classmethod
    def uses_registry(cls, options) -> bool:
        return options.schema is None and options.schema_file is None

    @classmethod
    def _record_schema(cls, options, registered) -> AvroRecordSchema:
        if registered is None:
            return AvroRecordSchema(load_schema(options))
        return AvroRecordSchema(writer_schema(registered))

    def __init__(self, spec, arrow_schema):
        super().__init__(spec, arrow_schema)
        # The reader schema every writer schema resolves against: the subject's latest now.
        self._reader: Any = self._latest(spec.subject) if self._registry is not None else None

    def _latest(self, subject: str | None) -> Any:
        """The reader schema: the subject's latest version now, if the registry has one."""
        assert self._registry is not None
        try:
            registered = self._registry.latest(subject) if subject else None
        except (UnknownSchema, RegistryUnavailable):
            return None
        if registered is None or registered.schema_type != self.schema_type:
            return None
        return writer_schema(registered)

    def _plain_plan(self, options) -> _Plan:
        return _Plan(load_schema(options), self._paths)

    def _registered_plan(self, registered, rest) -> _Plan:
        return _Plan(writer_schema(registered), self._paths, reader=self._reader)

    def _read_one_by_one(
        self,
        plan: _Plan,
        values: list[bytes],
        positions: np.ndarray,
        starts: np.ndarray,
        locate: Locator,
        errors: list[DecodeError],
    ) -> tuple[list[pa.Array | None], np.ndarray]:
        """The per-record loop, for schemas the columnar reader leaves out."""
        reader = fastavro.schemaless_reader
        parsed = plan.parsed
        records: list[Any] = []
        append = records.append
        bad: list[int] = []
        for i in positions.tolist():
            value = values[i]
            stream = BytesIO(value)
            if starts[i]:
                stream.seek(int(starts[i]))
            try:
                append(reader(stream, parsed, None))
            except Exception as exc:  # any decoding failure is this record's
                bad.append(i)
                # fastavro decodes strings with bytes.decode: a string not UTF-8 raises here.
                reason = (
                    DecodeReason.INVALID_UTF8
                    if isinstance(exc, UnicodeDecodeError)
                    else DecodeReason.INVALID_AVRO
                )
                errors.append(DecodeError(*locate(i), reason, str(exc)[:200]))
                continue
            if stream.tell() != len(value):
                records.pop()
                bad.append(i)
                errors.append(
                    DecodeError(
                        *locate(i), DecodeReason.INVALID_AVRO, "trailing bytes after the record"
                    )
                )
        if bad:
            positions = np.setdiff1d(positions, np.array(bad, dtype=np.int64))
        arrays = [
            None if getter is None else pa.array(list(map(getter, records)), arrow_type)
            for getter, arrow_type in zip(plan.getters, plan.types, strict=True)
        ]
        return arrays, positions
