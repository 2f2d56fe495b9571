"""Turning decoded Arrow arrays into the table's column types, for every format.

Each decoder produces one array per column in whatever type the record carried
(an Avro long, a protobuf enum name, a CSV string, ...); :func:`coerce` casts it
to the column's type in whole-array operations. Datetime columns take native
timestamps, epoch numbers (seconds, milliseconds, microseconds or nanoseconds,
told apart by magnitude) and ISO 8601 strings with or without a zone offset.
A value that cannot be converted makes its row a ``type_mismatch`` error, found
by converting one value at a time only in a batch that failed as a whole.

Strings must be valid UTF-8 before they reach a table: Perspective stores what
it is given, and a client reading the table later fails on the bad bytes (the
table becomes unreadable for everyone). :func:`invalid_utf8_rows` checks whole
columns at C speed and looks at single values only when a column fails.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TIMESTAMP_MS = pa.timestamp("ms")
_TIMESTAMP_UTC = pa.timestamp("ms", "UTC")
_ZONED = r":\d\d(\.\d+)?(Z|z|[+-]\d\d(:?\d\d)?)$"
_NUMBER = r"^\s*-?\d+(\.\d+)?\s*$"
CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError)


# Arrow scalars made once: a Python number handed to a compute function is converted on
# every call, and pyarrow 26 tries to import pandas and dateutil for it each time (an
# import that fails is not cached: ~70 us of path lookups apiece, ~0.5 ms a batch).
_BELOW_MS, _BELOW_US, _BELOW_NS = (pa.scalar(x, pa.float64()) for x in (1e11, 1e14, 1e17))
_FROM_S, _FROM_MS, _FROM_US, _FROM_NS = (
    pa.scalar(x, pa.float64()) for x in (1000.0, 1.0, 1e-3, 1e-6)
)


def epoch_to_timestamp_ms(numbers: pa.Array) -> pa.Array:
    """Epoch numbers in s, ms, us or ns (guessed from magnitude) as timestamp[ms]."""
    as_float = pc.cast(numbers, pa.float64())
    magnitude = pc.abs(as_float)
    scale = pc.if_else(
        pc.less(magnitude, _BELOW_MS),
        _FROM_S,
        pc.if_else(
            pc.less(magnitude, _BELOW_US),
            _FROM_MS,
            pc.if_else(pc.less(magnitude, _BELOW_NS), _FROM_US, _FROM_NS),
        ),
    )
    millis = pc.cast(pc.floor(pc.multiply(as_float, scale)), pa.int64())
    return pc.cast(millis, TIMESTAMP_MS)


def iso_to_timestamp_ms(strings: pa.Array) -> pa.Array:
    """ISO 8601 strings, with or without a zone offset, as UTC timestamp[ms]."""
    strings = pc.utf8_trim_whitespace(strings)
    try:
        return pc.cast(strings, TIMESTAMP_MS)
    except CAST_ERRORS:
        pass
    zoned = pc.match_substring_regex(strings, _ZONED)
    none = pa.scalar(None, pa.string())
    with_zone = pc.cast(pc.cast(pc.if_else(zoned, strings, none), _TIMESTAMP_UTC), TIMESTAMP_MS)
    naive = pc.cast(pc.if_else(zoned, none, strings), TIMESTAMP_MS)
    return pc.coalesce(with_zone, naive)


def to_timestamp_ms(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_timestamp(kind):
        return (
            pc.cast(array.cast(pa.timestamp(kind.unit)), TIMESTAMP_MS)
            if kind.tz
            else (pc.cast(array, TIMESTAMP_MS))
        )
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return epoch_to_timestamp_ms(array)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        numeric = pc.match_substring_regex(array, _NUMBER)
        if not pc.any(numeric).as_py():
            return iso_to_timestamp_ms(array)
        none = pa.scalar(None, pa.string())
        epochs = epoch_to_timestamp_ms(pc.cast(pc.if_else(numeric, array, none), pa.float64()))
        if pc.all(pc.or_(numeric, pc.is_null(array))).as_py():
            return epochs
        return pc.coalesce(epochs, iso_to_timestamp_ms(pc.if_else(numeric, none, array)))
    if pa.types.is_null(kind):
        return pa.nulls(len(array), TIMESTAMP_MS)
    return pc.cast(array, TIMESTAMP_MS)


def coerce(array: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    """``array`` as ``target``; raises an Arrow error if some value does not convert."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type == target:
        return array
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_timestamp(target):
        return to_timestamp_ms(array)
    if pa.types.is_date(target):
        if pa.types.is_timestamp(array.type):
            return pc.cast(array, target)
        if pa.types.is_string(array.type):
            return pc.cast(pc.cast(pc.utf8_trim_whitespace(array), pa.date32()), target)
    if pa.types.is_string(target):
        if pa.types.is_binary(array.type):
            return array.cast(pa.string())
        if pa.types.is_boolean(array.type):
            return pc.if_else(array, "true", "false")
    if pa.types.is_boolean(target) and pa.types.is_string(array.type):
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(array))
        truthy = pc.is_in(lowered, pa.array(["true", "1", "yes", "t"]))
        falsy = pc.is_in(lowered, pa.array(["false", "0", "no", "f", ""]))
        unknown = pc.and_(pc.and_(pc.invert(truthy), pc.invert(falsy)), pc.is_valid(array))
        if pc.any(unknown).as_py():
            raise pa.ArrowInvalid("not a boolean")
        return pc.if_else(pc.is_null(array), None, truthy)
    if (pa.types.is_integer(target) or pa.types.is_floating(target)) and pa.types.is_string(
        array.type
    ):
        array = pc.utf8_trim_whitespace(array)
        array = pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)
    return pc.cast(array, target)


def coerce_columns(
    arrays: list[pa.Array], schema: pa.Schema
) -> tuple[pa.Table, np.ndarray | None, list[str]]:
    """Columns converted to ``schema``; rows with a value that does not convert are dropped.

    Returns the table, a boolean mask of the rows kept (None when all are), and
    one message per dropped row (in row order).
    """
    out: list[pa.Array] = []
    bad: np.ndarray | None = None
    why: dict[int, str] = {}
    for array, field in zip(arrays, schema, strict=True):
        try:
            out.append(coerce(array, field.type))
            continue
        except CAST_ERRORS:
            pass
        converted, failed = _one_by_one(array, field.type)
        out.append(converted)
        for i in np.flatnonzero(failed):
            why.setdefault(int(i), f"{field.name}: {array[int(i)].as_py()!r} is not a {field.type}")
        bad = failed if bad is None else (bad | failed)
    table = pa.Table.from_arrays(out, schema=schema)
    if bad is None:
        return table, None, []
    keep = ~bad
    return table.filter(pa.array(keep)), keep, [why[i] for i in sorted(why)]


def _one_by_one(array: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """The slow path of a batch that would not convert: each value on its own."""
    values = []
    failed = np.zeros(len(array), dtype=bool)
    for i in range(len(array)):
        try:
            values.append(coerce(array.slice(i, 1), target)[0].as_py())
        except CAST_ERRORS:
            values.append(None)
            failed[i] = True
    return pa.array(values, target), failed


def bytes_as(values: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Binary values (keys, headers) as ``target``: one cast for the whole array.

    When some value is not UTF-8 or does not convert, each is tried on its own (the
    rare batch only). Returns the values, null where one failed, and a mask of the
    failures; null inputs are not failures.
    """
    try:
        return coerce(values.cast(pa.string()), target), np.zeros(len(values), dtype=bool)
    except CAST_ERRORS:
        pass
    out = []
    failed = np.zeros(len(values), dtype=bool)
    for i in range(len(values)):
        try:
            out.append(coerce(values.slice(i, 1).cast(pa.string()), target)[0].as_py())
        except CAST_ERRORS:
            out.append(None)
            failed[i] = True
    return pa.array(out, target), failed


def is_utf8(value: bytes) -> bool:
    """Whether ``value`` is valid UTF-8 (the slow path: one value at a time)."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def invalid_utf8_rows(table: pa.Table) -> tuple[np.ndarray, dict[int, str]] | None:
    """Rows with a string that is not valid UTF-8, and for each the first such column.

    ``None`` (the usual case) when every string column validates in one pass;
    only a column that does not is looked at value by value.
    """
    bad: np.ndarray | None = None
    columns: dict[int, str] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        raw = column.cast(
            pa.large_binary() if pa.types.is_large_string(field.type) else pa.binary()
        )
        failed = np.fromiter(
            (v is not None and not is_utf8(v) for v in raw.to_pylist()), dtype=bool, count=len(raw)
        )
        for i in np.flatnonzero(failed).tolist():
            columns.setdefault(i, field.name)
        bad = failed if bad is None else (bad | failed)
    if bad is None or not bad.any():
        return None
    return bad, columns


def merge_pieces(
    pieces: list[tuple[pa.Table, np.ndarray]], schema: pa.Schema
) -> tuple[pa.Table, np.ndarray]:
    """Rows decoded in groups (one per writer schema) back in their batch order."""
    if not pieces:
        return schema.empty_table(), np.empty(0, np.int64)
    if len(pieces) == 1:
        return pieces[0]
    rows = pa.concat_tables([p[0] for p in pieces])
    positions = np.concatenate([p[1] for p in pieces])
    order = np.argsort(positions, kind="stable")
    return rows.take(pa.array(order)), positions[order]


def drop_failed(
    arrays: list[pa.Array | None], good: np.ndarray, positions: np.ndarray
) -> tuple[list[pa.Array | None], np.ndarray, np.ndarray]:
    """Keep the records a columnar reader decoded; returns (arrays, kept, failed positions)."""
    if good.all():
        return arrays, positions, positions[:0]
    mask = pa.array(good)
    kept = [a if a is None else a.filter(mask) for a in arrays]
    return kept, positions[good], positions[~good]
