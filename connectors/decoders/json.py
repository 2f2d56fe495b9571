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

import io

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from connectors.base import DecodeError, Decoder, DecodeReason, Locator
from connectors.decoders.columns import epoch_to_timestamp_ms, is_utf8
from connectors.halves import split_until_isolated

_OPEN = b'{"v":'
_SEPARATOR = b'}\n{"v":'
_CLOSE = b"}"
# What a parse of bad records raises: the batch is split until they stand alone.
_PARSE_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, UnicodeDecodeError)


class JsonDecoder(Decoder):
    name = "json"

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

    # -- parsing -----------------------------------------------------------

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

    def _parse(self, values: list[bytes]) -> pa.StructArray:
        """Parse values into the wrapper's struct column; raise on any problem."""
        buffer = _OPEN + _SEPARATOR.join(values) + _CLOSE
        if buffer.count(b"\n") != len(values) - 1 or b"\r" in buffer:
            # Pretty-printed JSON: a line break is whitespace to JSON (a raw one
            # inside a string is invalid anyway), but here it would shift records
            # between lines. Rare, so this per-value pass costs nothing in steady state.
            values = [_one_line(v) for v in values]
            buffer = _OPEN + _SEPARATOR.join(values) + _CLOSE
        table = pajson.read_json(io.BytesIO(buffer), parse_options=self._parse_options)
        if table.num_rows != len(values):
            raise ValueError("a value held more than one JSON document")
        return table.column("v").combine_chunks()

    def _parse_adapting(self, values: list[bytes]) -> pa.StructArray:
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

    def _decode_segment(self, values: list[bytes]) -> tuple[pa.StructArray, pa.Table]:
        struct = self._parse_adapting(values)
        return struct, self._to_rows(struct)

    # -- the batch -----------------------------------------------------------

    def decode_values(
        self, values: list[bytes], locate: Locator
    ) -> tuple[pa.Table, np.ndarray, list[DecodeError]]:
        errors: list[DecodeError] = []
        pieces: list[pa.Table] = []
        positions: list[np.ndarray] = []

        def attempt(start: int, stop: int) -> None:
            struct, rows = self._decode_segment(values[start:stop])
            segment_positions = np.arange(start, stop, dtype=np.int64)
            if struct.null_count and self._whole is None:
                null_objects = struct.is_null()
                for i in pc.indices_nonzero(null_objects).to_pylist():
                    errors.append(
                        DecodeError(
                            *locate(start + i), DecodeReason.NOT_OBJECT, "JSON null, not an object"
                        )
                    )
                keep = pc.invert(null_objects)
                rows = rows.filter(keep)
                segment_positions = segment_positions[keep.to_numpy(zero_copy_only=False)]
            if rows.num_rows:
                pieces.append(rows)
                positions.append(segment_positions)

        def isolated(i: int, _exc: Exception) -> None:
            errors.append(self._classify(values[i], locate(i)))

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
            self._decode_segment([value])
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


def _one_line(value: bytes) -> bytes:
    if b"\n" in value or b"\r" in value:
        return value.replace(b"\r", b" ").replace(b"\n", b" ")
    return value


def _describe(message: str) -> str:
    return message.replace("/v/", "/").replace("JSON parse error: ", "")[:200]
