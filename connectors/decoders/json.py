"""JSON values decoded a whole batch at a time with pyarrow's JSON reader.

Every value is wrapped as ``{"v": <value>}`` on a line of its own and the
batch is parsed in one call with an explicit schema. The wrapper makes every
top-level JSON value an object, which matters: pyarrow's reader crashes the
process on a top-level ``null`` and silently skips blank lines. A parse that
fails, or returns a different number of rows than values, is split in halves
until the bad records stand alone; those are classified (not JSON, not an
object, wrong type) and reported, and every good record of the batch is kept.

pyarrow's reader copies string bytes as they are, valid UTF-8 or not; the
check that no such string reaches a table is made on the decoded columns
(``connectors/decoding.py``). A record that fails to parse only because it
is not UTF-8 is classified ``invalid_utf8``; binary noise stays ``invalid_json``.

Datetime columns take ISO 8601 strings or epoch numbers (s, ms, us or ns,
told apart by magnitude). Which of the two a column carries is learnt from
the data and kept, so a steady stream pays for one parse per batch.

Columns may come from nested fields (``fields: {px: price.last}``): the
explicit schema then nests structs along the paths, and the same single parse
reads them. An empty path reads the whole value (a JSON key that is a plain
string or number).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from connectors.base import DecodeError, Decoder, DecodeReason, Locator
from connectors.decoders.columns import epoch_to_timestamp_ms, is_utf8
from connectors.halves import split_until_isolated

_jsonrows: ModuleType | None
try:  # the fast path for flat objects of scalar columns (connectors/decoders/_jsonrows.c)
    from connectors.decoders import _jsonrows
except ImportError:  # not compiled: every batch goes through pyarrow's reader
    _jsonrows = None

_OPEN = pa.scalar(b'{"v":', pa.large_binary())
_CLOSE = pa.scalar(b"}\n", pa.large_binary())
_NOTHING = pa.scalar(b"", pa.large_binary())
# One block for the whole batch, parsed on the calling thread: a batch is one parse,
# and its CPU time is the consumer thread's (where the benchmark accounts for it).
_MIN_BLOCK_BYTES = 1 << 20
_MAX_BLOCK_BYTES = 1 << 30
# Column types the fast path writes, and its code for each (datetime: epoch numbers only).
_FAST_KINDS = {pa.int64(): 0, pa.float64(): 1, pa.bool_(): 2, pa.string(): 3}
_FAST_EPOCH = 4
# What a parse of bad records raises: the batch is split until they stand alone.
_PARSE_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, UnicodeDecodeError)


class JsonDecoder(Decoder):
    name = "json"
    reads_arrow = True

    def __init__(self, spec, arrow_schema):
        super().__init__(spec, arrow_schema)
        self._datetime_columns = {f.name for f in arrow_schema if pa.types.is_timestamp(f.type)}
        self._date_columns = {f.name for f in arrow_schema if pa.types.is_date(f.type)}
        self._numeric_time: set[str] = set()
        self._paths = {f.name: spec.paths.get(f.name, (f.name,)) for f in arrow_schema}
        self._flat = all(path == (name,) for name, path in self._paths.items())
        self._whole = next((n for n, path in self._paths.items() if path == ()), None)
        if self._whole is not None and len(self._paths) > 1:
            raise ValueError("a column that takes the whole JSON value must be the only one")
        self._parse_options = self._make_parse_options()
        self._fast_columns: list[tuple[bytes, int]] | None = None
        kinds: list[int | None] = [
            _FAST_EPOCH if f.name in self._datetime_columns else _FAST_KINDS.get(f.type)
            for f in arrow_schema
        ]
        if _jsonrows is not None and self._flat and self._whole is None and None not in kinds:
            self._fast_columns = [
                (f.name.encode(), kind)
                for f, kind in zip(arrow_schema, kinds, strict=True)
                if kind is not None  # none is: checked above
            ]

    # -- parsing -----------------------------------------------------------

    def _fast_rows(self, values: pa.Array) -> pa.Table | None:
        """The batch through the fast path, or None where it declines (see _jsonrows.c)."""
        count = len(values)
        offsets = values.buffers()[1].slice(values.offset * 8, (count + 1) * 8)
        data = values.buffers()[2] or pa.py_buffer(b"")
        columns = self._fast_columns
        if _jsonrows is None or columns is None:
            return None
        parsed = _jsonrows.parse(count, offsets, data, columns)
        if parsed is None:
            return None
        arrays = []
        for f, (validity, column, string_offsets, nulls) in zip(
            self.arrow_schema, parsed, strict=True
        ):
            buffers = [None if validity is None else pa.py_buffer(validity)]
            if string_offsets is not None:
                buffers.append(pa.py_buffer(string_offsets))
            buffers.append(pa.py_buffer(column))
            # A datetime column comes as int64 milliseconds: timestamp[ms] has that layout.
            arrays.append(pa.Array.from_buffers(f.type, count, buffers, null_count=nulls))
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema)

    def _parse_type(self, f: pa.Field) -> pa.DataType:
        if f.name in self._numeric_time:
            return pa.float64()
        if f.name in self._date_columns:
            return pa.string()
        return f.type

    def _make_parse_options(self) -> pajson.ParseOptions:
        if self._whole is not None:
            value_type = self._parse_type(self.arrow_schema.field(self._whole))
            wrapped = pa.schema([pa.field("v", value_type)])
        elif self._flat:
            fields = [pa.field(f.name, self._parse_type(f)) for f in self.arrow_schema]
            wrapped = pa.schema([pa.field("v", pa.struct(fields))])
        else:
            tree: dict = {}
            for f in self.arrow_schema:
                *parents, leaf = self._paths[f.name]
                node = tree
                for part in parents:
                    node = node.setdefault(part, {})
                    if not isinstance(node, dict):
                        raise ValueError(
                            f"field path {'.'.join(self._paths[f.name])} crosses a value"
                        )
                if isinstance(node.get(leaf), dict):
                    raise ValueError(f"field path {'.'.join(self._paths[f.name])} is an object")
                node.setdefault(leaf, self._parse_type(f))
            wrapped = pa.schema([pa.field("v", _struct_type(tree))])
        return pajson.ParseOptions(explicit_schema=wrapped, unexpected_field_behavior="ignore")

    def _parse(self, values: pa.Array) -> pa.StructArray:
        """Parse values into the wrapper's struct column; raise on any problem.

        Every value is framed as ``{"v":<value>}`` plus a line break in one
        whole-array operation, and the framed bytes are parsed in one call.
        """
        if _has_line_breaks(values):
            # Pretty-printed JSON: a line break is whitespace to JSON (a raw one
            # inside a string is invalid anyway), but here it would shift records
            # between lines. Rare, so this per-value pass costs nothing in steady state.
            values = pa.array([_one_line(v) for v in values.to_pylist()], pa.large_binary())
        framed = _data(pc.binary_join_element_wise(_OPEN, values, _CLOSE, _NOTHING))
        block = min(max(_MIN_BLOCK_BYTES, framed.size + 1), _MAX_BLOCK_BYTES)
        table = pajson.read_json(
            pa.BufferReader(framed),
            parse_options=self._parse_options,
            read_options=pajson.ReadOptions(use_threads=False, block_size=block),
        )
        if table.num_rows != len(values):
            raise ValueError("a value held more than one JSON document")
        return table.column("v").combine_chunks()

    def _parse_adapting(self, values: pa.Array) -> pa.StructArray:
        """Parse, flipping a datetime column between string and number if the data says so."""
        try:
            return self._parse(values)
        except (pa.ArrowInvalid, ValueError) as exc:
            flipped = self._flip_time_column(str(exc))
            if not flipped:
                raise
            try:
                return self._parse(values)
            except (pa.ArrowInvalid, ValueError):
                self._flip_time_column_back(flipped)
                raise

    def _flip_time_column(self, message: str) -> str | None:
        for name in self._datetime_columns:
            path = "/".join(self._paths[name])
            if (
                f"Column(/v/{path})" in message
                or f"Column(/{path})" in message
                or (not path and "Column(/v)" in message)
            ):
                self._numeric_time ^= {name}
                self._parse_options = self._make_parse_options()
                return name
        return None

    def _flip_time_column_back(self, name: str) -> None:
        self._numeric_time ^= {name}
        self._parse_options = self._make_parse_options()

    def _to_rows(self, struct: pa.StructArray) -> pa.Table:
        """The wrapper's struct as a table of the table's schema (null structs kept)."""
        columns = []
        for i, f in enumerate(self.arrow_schema):
            if self._whole is not None:
                column = struct
            elif self._flat:
                column = struct.field(i)
            else:
                column = _by_path(struct, self._paths[f.name])
            if f.name in self._numeric_time:
                column = epoch_to_timestamp_ms(column)
            elif f.name in self._date_columns:
                column = pc.cast(column, pa.date32())
            columns.append(column)
        return pa.Table.from_arrays(columns, schema=self.arrow_schema)

    def _decode_segment(self, values: pa.Array) -> tuple[pa.StructArray, pa.Table]:
        struct = self._parse_adapting(values)
        return struct, self._to_rows(struct)

    # -- the batch -----------------------------------------------------------

    def decode_values(
        self, values: list[bytes] | pa.Array, locate: Locator
    ) -> tuple[pa.Table, np.ndarray, list[DecodeError]]:
        if not isinstance(values, pa.Array):
            values = pa.array(values, pa.large_binary())
        if self._fast_columns is not None and len(values):
            rows = self._fast_rows(values)
            if rows is not None:
                return rows, np.arange(len(values), dtype=np.int64), []
        errors: list[DecodeError] = []
        pieces: list[pa.Table] = []
        positions: list[np.ndarray] = []

        def attempt(start: int, stop: int) -> None:
            struct, rows = self._decode_segment(values[start:stop])
            segment_positions = np.arange(start, stop, dtype=np.int64)
            if struct.null_count and self._whole is None:
                null_objects = struct.is_null()
                for i in pc.indices_nonzero(null_objects).to_pylist():
                    topic, partition, offset = locate(start + i)
                    errors.append(
                        DecodeError(
                            topic,
                            partition,
                            offset,
                            DecodeReason.NOT_OBJECT,
                            "JSON null, not an object",
                        )
                    )
                keep = pc.invert(null_objects)
                rows = rows.filter(keep)
                segment_positions = segment_positions[keep.to_numpy(zero_copy_only=False)]
            if rows.num_rows:
                pieces.append(rows)
                positions.append(segment_positions)

        def isolated(i: int, _exc: Exception) -> None:
            errors.append(self._classify(values[i].as_py(), locate(i)))

        split_until_isolated(0, len(values), attempt, isolated, _PARSE_ERRORS)
        if not pieces:
            return self.arrow_schema.empty_table(), np.empty(0, np.int64), errors
        rows = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        return rows, np.concatenate(positions), errors

    def _classify(self, value: bytes, where: tuple[str, int, int]) -> DecodeError:
        """Why one record failed: the slow path, only ever run on bad records."""
        topic, partition, offset = where
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            if not is_utf8(value) and _is_json(value.decode("utf-8", "replace")):
                return DecodeError(
                    topic, partition, offset, DecodeReason.INVALID_UTF8, "not valid UTF-8"
                )
            return DecodeError(topic, partition, offset, DecodeReason.INVALID_JSON, str(exc)[:200])
        if not isinstance(document, dict) and self._whole is None:
            kind = type(document).__name__
            return DecodeError(topic, partition, offset, DecodeReason.NOT_OBJECT, f"a JSON {kind}")
        try:
            self._decode_segment(pa.array([value], pa.large_binary()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            return DecodeError(
                topic, partition, offset, DecodeReason.TYPE_MISMATCH, _describe(str(exc))
            )
        return DecodeError(
            topic, partition, offset, DecodeReason.INVALID_JSON, "rejected by the parser"
        )


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _struct_type(tree: dict) -> pa.DataType:
    return pa.struct(
        [
            pa.field(name, _struct_type(node) if isinstance(node, dict) else node)
            for name, node in tree.items()
        ]
    )


def _by_path(struct: pa.StructArray, path: tuple[str, ...]) -> pa.Array:
    """A nested field of the wrapper's struct; null wherever a parent object is null."""
    column = struct
    for part in path:
        column = pc.struct_field(column, [column.type.get_field_index(part)])
    return column


def _data(values: pa.Array) -> pa.Buffer:
    """The bytes of a ``large_binary`` array's values, back to back (no copy)."""
    offsets = np.frombuffer(
        values.buffers()[1], dtype=np.int64, count=len(values) + 1, offset=values.offset * 8
    )
    start, stop = int(offsets[0]), int(offsets[-1])
    data = values.buffers()[2]
    if data is None:
        return pa.py_buffer(b"")
    return data.slice(start, stop - start)


def _has_line_breaks(values: pa.Array) -> bool:
    """Whether any value holds a line feed or a carriage return."""
    if not len(values):
        return False
    data = np.frombuffer(_data(values), dtype=np.uint8)
    return bool(np.any(data == 10)) or bool(np.any(data == 13))


def _one_line(value: bytes) -> bytes:
    if b"\n" in value or b"\r" in value:
        return value.replace(b"\r", b" ").replace(b"\n", b" ")
    return value


def _describe(message: str) -> str:
    return message.replace("/v/", "/").replace("JSON parse error: ", "")[:200]
