"""The request bodies of ``perspective.proto`` (4.3.0), field by field, and a strict validator.

The engine parses a request with the C++ protobuf runtime and, when parsing
fails halfway (a wrong wire type, a string that is not UTF-8), goes on with the
part it did parse: a filter cut off before its value, for instance, crashes the
process. So the guard checks every body against the schema below before the
engine sees it: every field known, of its declared wire type, every string
valid UTF-8, every nested message well formed. A frame that passes parses
completely, so the engine and the guard read it the same way.

Types: ``"string"``, ``"bytes"``, ``"bool"``, ``"uint32"``, ``"enum"``,
``"double"``, or a nested message (a dict of field number to type). Repeated
and map fields are the same on the wire as singular ones occurring again, so
the schema does not tell them apart; a map entry is a message ``{1: key, 2:
value}``.
"""

from __future__ import annotations

from typing import Any

from service.security.wire import FIXED64, LENGTH_DELIMITED, VARINT, WireError, fields

Message = dict[int, Any]

EMPTY: Message = {}
VIEW_PORT: Message = {1: "uint32", 2: "uint32", 3: "uint32", 4: "uint32"}
SCALAR: Message = {1: "bool", 4: "double", 6: "string", 7: "enum"}
VIEW_CONFIG: Message = {
    1: "string",  # group_by
    2: "string",  # split_by
    3: {1: "enum", 2: {1: "string"}},  # columns: default_columns | Columns { columns }
    4: {1: "string", 2: "string", 3: SCALAR},  # filter: column, op, value
    5: {1: "string", 2: "enum"},  # sort: column, op
    6: {1: "string", 2: "string"},  # expressions: name -> expression
    7: {1: "string", 2: {1: "string"}},  # aggregates: column -> AggList
    8: "enum",  # filter_op
    9: "uint32",  # group_by_depth
    10: "enum",  # group_rollup_mode
}
MAKE_TABLE_DATA: Message = {
    1: {1: {1: "string", 2: "enum"}},  # from_schema: Schema { KeyTypePair { name, type } }
    2: "string",  # from_csv
    3: "bytes",  # from_arrow
    4: "string",  # from_rows
    5: "string",  # from_cols
    6: "string",  # from_view
    7: "string",  # from_ndjson
}
TO_STRING: Message = {1: VIEW_PORT, 2: "bool", 3: "bool", 4: "bool"}

BODIES: dict[str, Message] = {
    "get_features": EMPTY,
    "get_hosted_tables": {1: "bool"},
    "remove_hosted_tables_update": {1: "uint32"},
    "table_make_port": EMPTY,
    "table_make_view": {1: "string", 2: VIEW_CONFIG},
    "table_schema": EMPTY,
    "table_size": EMPTY,
    "table_validate_expr": {1: {1: "string", 2: "string"}},
    "view_column_paths": {1: "uint32", 2: "uint32"},
    "view_delete": EMPTY,
    "view_dimensions": EMPTY,
    "view_expression_schema": EMPTY,
    "view_get_config": EMPTY,
    "view_schema": EMPTY,
    "view_to_arrow": {1: VIEW_PORT, 2: "string"},
    "server_system_info": EMPTY,
    "view_collapse": {1: "uint32"},
    "view_expand": {1: "uint32"},
    "view_get_min_max": {1: "string"},
    "view_on_update": {1: "enum"},
    "view_remove_on_update": {1: "uint32"},
    "view_set_depth": {1: "uint32"},
    "view_to_columns_string": TO_STRING,
    "view_to_csv": {1: VIEW_PORT},
    "view_to_rows_string": TO_STRING,
    "view_to_ndjson_string": TO_STRING,
    "make_table": {1: MAKE_TABLE_DATA, 2: {1: "string", 2: "uint32"}},
    "table_delete": {1: "bool"},
    "table_on_delete": EMPTY,
    "table_remove_delete": {1: "uint32"},
    "table_remove": {1: MAKE_TABLE_DATA},
    "table_replace": {1: MAKE_TABLE_DATA},
    "table_update": {1: MAKE_TABLE_DATA, 2: "uint32"},
    "view_on_delete": EMPTY,
    "view_remove_delete": {1: "uint32"},
}

# Filter operators that take no value; any other one needs at least one (the engine
# dereferences the first value without looking).
NO_VALUE_OPERATORS = frozenset({"is null", "is not null", "in", "not in"})
FILTER = 4


class SchemaError(ValueError):
    """A body that does not match its schema."""


def validate(payload: bytes, message: Message, path: str = "") -> None:
    """Raise :class:`SchemaError` unless ``payload`` is exactly a ``message``."""
    try:
        found = list(fields(payload))
    except WireError as exc:
        raise SchemaError(f"{path or 'body'}: {exc}") from None
    for field in found:
        kind = message.get(field.number)
        where = f"{path}.{field.number}" if path else str(field.number)
        if kind is None:
            raise SchemaError(f"{where}: unknown field")
        if isinstance(kind, dict):
            _expect(field.wire_type, LENGTH_DELIMITED, where)
            validate(payload[field.value : field.end], kind, where)
        elif kind in ("string", "bytes"):
            _expect(field.wire_type, LENGTH_DELIMITED, where)
            if kind == "string":
                try:
                    payload[field.value : field.end].decode("utf-8")
                except UnicodeDecodeError:
                    raise SchemaError(f"{where}: not UTF-8") from None
        elif kind == "double":
            _expect(field.wire_type, FIXED64, where)
        else:
            _expect(field.wire_type, VARINT, where)
            if kind == "bool" and field.value > 1:
                raise SchemaError(f"{where}: not a bool")
            if kind in ("uint32", "enum") and field.value >= 1 << 32:
                raise SchemaError(f"{where}: larger than 32 bits")


def _expect(wire_type: int, expected: int, where: str) -> None:
    if wire_type != expected:
        raise SchemaError(f"{where}: wire type {wire_type}, expected {expected}")


def filters_without_values(config: bytes) -> list[tuple[str, str]]:
    """(column, operator) of each filter in a valid ViewConfig that lacks a needed value."""
    missing = []
    for field in fields(config):
        if field.number != FILTER:
            continue
        entry = config[field.value : field.end]
        column = operator = ""
        values = 0
        for part in fields(entry):
            if part.number == 1:
                column = entry[part.value : part.end].decode("utf-8")
            elif part.number == 2:
                operator = entry[part.value : part.end].decode("utf-8")
            elif part.number == 3:
                values += 1
        if values == 0 and operator not in NO_VALUE_OPERATORS:
            missing.append((column, operator))
    return missing
