"""The Perspective protocol's facts, as of perspective 4.3.0: field numbers, request kinds, bodies.

Requests and responses are ``perspective.proto`` messages (protobuf). The field
numbers are public in the perspective repository's
``rust/perspective-client/perspective.proto``; this module holds the ones the
guard reads, in one place, and nothing that acts on them: reading and writing
messages is service/security/messages.py, deciding is service/security/guard.py.

A ``Request`` is ``{uint32 msg_id = 1; string entity_id = 2; oneof {...}}``:
one member per request kind (:data:`KINDS`), whose body is a message of its
own (:data:`BODIES`). A ``Response`` has the same envelope and one member per
response kind.

Body schemas: ``"string"``, ``"bytes"``, ``"bool"``, ``"uint32"``, ``"enum"``,
``"double"``, or a nested message (a dict of field number to type). Repeated
and map fields are the same on the wire as singular ones occurring again, so
the schema does not tell them apart; a map entry is a message ``{1: key, 2:
value}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# -- envelopes --------------------------------------------------------------------

REQUEST_MSG_ID = 1
REQUEST_ENTITY_ID = 2
RESPONSE_MSG_ID = 1
RESPONSE_ENTITY_ID = 2

# Response kinds the guard reads (Response's oneof).
RESPONSE_HOSTED_TABLES = 4  # GetHostedTablesResp { repeated HostedTable table_infos = 1 }
RESPONSE_MAKE_VIEW = 6  # TableMakeViewResp { string view_id = 1 }
RESPONSE_VIEW_DIMENSIONS = 12  # ViewDimensionsResp { ...; num_view_rows = 3; num_view_columns = 4 }
RESPONSE_SERVER_ERROR = 50  # ServerError { string message = 1; StatusCode status_code = 2 }

# -- fields inside bodies ---------------------------------------------------------

MAP_KEY, MAP_VALUE = 1, 2  # a map<K, V> entry
HOSTED_TABLE_ENTITY_ID = 1  # HostedTable { string entity_id = 1; ... }
SERVER_ERROR_MESSAGE = 1
DIMENSIONS_VIEW_ROWS = 3
DIMENSIONS_VIEW_COLUMNS = 4
MAKE_VIEW_VIEW_ID = 1  # TableMakeViewReq { string view_id = 1; ViewConfig config = 2 }
MAKE_VIEW_CONFIG = 2
GET_HOSTED_SUBSCRIBE = 1  # GetHostedTablesReq { bool subscribe = 1 }
COLUMN_PATHS_START, COLUMN_PATHS_END = 1, 2  # ViewColumnPathsReq { start_col = 1; end_col = 2 }
VIEWPORT = 1  # ViewTo*Req { ViewPort viewport = 1; ... }
VIEWPORT_START_ROW, VIEWPORT_START_COL, VIEWPORT_END_ROW, VIEWPORT_END_COL = 1, 2, 3, 4
VALIDATE_EXPRESSIONS = 1  # TableValidateExprReq { map<string, string> column_to_expr = 1 }

# ViewConfig
CONFIG_GROUP_BY = 1
CONFIG_SPLIT_BY = 2
CONFIG_COLUMNS = 3  # ColumnsUpdate { oneof { NullValue default_columns = 1; Columns columns = 2 } }
CONFIG_COLUMNS_LIST = 2
CONFIG_FILTER = 4  # Filter { string column = 1; string op = 2; repeated Scalar value = 3 }
FILTER_COLUMN, FILTER_OPERATOR, FILTER_VALUE = 1, 2, 3
CONFIG_EXPRESSIONS = 6  # map<string, string>: name -> expression
CONFIG_GROUP_BY_DEPTH = 9

# -- request kinds ----------------------------------------------------------------

CLIENT = "client"  # about the server as a whole (entity_id unused)
TABLE = "table"  # entity_id names a hosted table
VIEW = "view"  # entity_id names a view
NEW_TABLE = "new_table"  # entity_id names the table to create


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    scope: str
    writes: bool = False  # changes or deletes the hosted table
    verb: str = ""  # how a refusal names the operation


KINDS: dict[int, Kind] = {
    3: Kind("get_features", CLIENT),
    4: Kind("get_hosted_tables", CLIENT),
    37: Kind("remove_hosted_tables_update", CLIENT),
    # A port only tags later updates; <perspective-viewer> asks for one when it loads a
    # table in server mode. The updates themselves are what the guard refuses.
    5: Kind("table_make_port", TABLE),
    6: Kind("table_make_view", TABLE),
    7: Kind("table_schema", TABLE),
    8: Kind("table_size", TABLE),
    9: Kind("table_validate_expr", TABLE),
    10: Kind("view_column_paths", VIEW),
    11: Kind("view_delete", VIEW),
    12: Kind("view_dimensions", VIEW),
    13: Kind("view_expression_schema", VIEW),
    14: Kind("view_get_config", VIEW),
    15: Kind("view_schema", VIEW),
    16: Kind("view_to_arrow", VIEW),
    17: Kind("server_system_info", CLIENT),
    18: Kind("view_collapse", VIEW),
    19: Kind("view_expand", VIEW),
    20: Kind("view_get_min_max", VIEW),
    21: Kind("view_on_update", VIEW),
    22: Kind("view_remove_on_update", VIEW),
    23: Kind("view_set_depth", VIEW),
    24: Kind("view_to_columns_string", VIEW),
    25: Kind("view_to_csv", VIEW),
    26: Kind("view_to_rows_string", VIEW),
    36: Kind("view_to_ndjson_string", VIEW),
    27: Kind("make_table", NEW_TABLE, writes=True, verb="make_table"),
    28: Kind("table_delete", TABLE, writes=True, verb="delete"),
    29: Kind("table_on_delete", TABLE),
    30: Kind("table_remove_delete", TABLE),
    31: Kind("table_remove", TABLE, writes=True, verb="remove"),
    32: Kind("table_replace", TABLE, writes=True, verb="replace (or clear)"),
    33: Kind("table_update", TABLE, writes=True, verb="update"),
    34: Kind("view_on_delete", VIEW),
    35: Kind("view_remove_delete", VIEW),
}
KIND_NUMBERS = {kind.name: number for number, kind in KINDS.items()}

# Requests that take a table's write lock in the engine besides the writes above (checked
# in perspective 4.3.0's sources: registering or dropping a view's context, reshaping its
# tree).
ENGINE_WRITES = frozenset(
    {"table_make_view", "view_delete", "view_expand", "view_collapse", "view_set_depth"}
)
# Requests that serialise a view, optionally a viewport of it.
VIEWPORT_KINDS = frozenset(
    {
        "view_to_arrow",
        "view_to_csv",
        "view_to_columns_string",
        "view_to_rows_string",
        "view_to_ndjson_string",
    }
)
# Requests whose uint32 arguments are row depths or indexes.
TREE_KINDS = frozenset({"view_expand", "view_collapse", "view_set_depth"})
# The engine reads row and column numbers as signed 32-bit integers in places:
# a uint32 of 2**31 or more becomes negative there and crashes the process.
MAX_ARGUMENT = (1 << 31) - 1
# Filter operators that take no value; any other one needs at least one (the engine
# dereferences the first value without looking).
NO_VALUE_OPERATORS = frozenset({"is null", "is not null", "in", "not in"})

# -- request bodies ---------------------------------------------------------------

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
assert set(KIND_NUMBERS) == set(BODIES), "every request kind needs its body schema"
