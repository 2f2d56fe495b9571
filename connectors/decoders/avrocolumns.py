"""Columnar Avro decoding: a whole batch of records of one schema with numpy, no per-record Python.

Avro's binary encoding has no per-record framing, but every record of a batch
follows the same schema, so the batch can be decoded in lockstep: one position
per record, and for each field in schema order one vectorised step over all
records (zig-zag varints, fixed-width floats, length-prefixed strings gathered
into an Arrow string array). Nullable unions split the records by branch.

Supported: records (nested ones too), null, boolean, int, long, float, double,
string, bytes, enum, fixed, logical types on those, and unions of null with one
of them. A schema with arrays, maps, other unions or decimals is decoded one
record at a time by fastavro instead (see ``avro.py``).

Each record must end exactly where its value ends; one that does not (or that
runs past its end, or holds an impossible length or branch) is reported bad
and dropped, the rest of the batch is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from connectors.decoders.avroschema import (
    TIMESTAMP_LOGICAL_TYPES,
    avro_kind,
    field_named,
    is_record,
)
from connectors.decoders.varints import PAD, read_varints, unzigzag

_SCALARS = {"null", "boolean", "int", "long", "float", "double", "string", "bytes", "enum", "fixed"}


class Unsupported(Exception):
    """The schema uses a type this decoder leaves to fastavro."""


class _Leaf:
    """One column's values, filled in for the records that reach it."""

    def __init__(self, kind: str, n: int, arrow_type: pa.DataType | None, symbols=None):
        self.kind = kind  # long | float | double | boolean | string | enum | null
        self.arrow_type = arrow_type
        self.symbols = symbols
        self.valid = np.zeros(n, dtype=bool)
        if kind in ("string",):
            self.starts = np.zeros(n, dtype=np.int64)
            self.lengths = np.zeros(n, dtype=np.int64)
        elif kind == "double":
            self.values = np.zeros(n, dtype=np.float64)
        elif kind == "float":
            self.values = np.zeros(n, dtype=np.float32)
        elif kind == "boolean":
            self.values = np.zeros(n, dtype=bool)
        else:
            self.values = np.zeros(n, dtype=np.int64)


class ColumnarReader:
    """Decodes batches of one writer schema into the columns at ``paths``."""

    def __init__(self, writer: Any, named: dict[str, Any], paths: list[tuple[str, ...]]):
        self.named = named
        self.paths = paths
        self.root = self._resolve(writer)
        if not is_record(self.root):
            raise Unsupported("not a record")
        # Check the whole schema once, so decoding never meets an unsupported type.
        self._check(self.root, ())

    # -- schema ---------------------------------------------------------------------

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self.named:
            return self.named[schema]
        if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
            return schema["type"]
        if (
            isinstance(schema, dict)
            and isinstance(schema.get("type"), str)
            and schema["type"] in self.named
        ):
            return self.named[schema["type"]]
        return schema

    def _check(self, schema: Any, seen: tuple[str, ...]) -> None:
        schema = self._resolve(schema)
        kind = avro_kind(schema)
        if kind in ("record", "error"):
            name = schema.get("name", "")
            if name in seen:
                raise Unsupported("recursive record")
            for f in schema.get("fields", []):
                self._check(f["type"], (*seen, name))
        elif kind == "union":
            branches = [self._resolve(b) for b in schema]
            non_null = [b for b in branches if avro_kind(b) != "null"]
            if len(branches) > 2 or len(non_null) != 1:
                raise Unsupported("a union other than [null, T]")
            self._check(non_null[0], seen)
        elif kind not in _SCALARS or (
            isinstance(schema, dict) and schema.get("logicalType") == "decimal"
        ):
            raise Unsupported(kind)

    # -- decoding ---------------------------------------------------------------------

    def read(
        self, values: list[bytes], starts: np.ndarray
    ) -> tuple[list[pa.Array | None], np.ndarray]:
        """(one array per path, None for a path the schema lacks; mask of good records).

        ``starts`` is where each record begins in its value (after any framing).
        """
        n = len(values)
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        ends = np.cumsum(lengths)
        self.buf = np.frombuffer(b"".join(values) + bytes(PAD), dtype=np.uint8)
        self.pos = ends - lengths + starts
        self.ends = ends
        self.good = lengths >= starts
        self.leaves: dict[tuple[str, ...], _Leaf] = {}
        self.wanted = set(self.paths)
        self._record(self.root, (), np.arange(n, dtype=np.int64))
        self.good &= self.pos == ends
        arrays = [self._array(self.leaves.get(path), path) for path in self.paths]
        return arrays, self.good

    def _record(self, schema: Any, path: tuple[str, ...], idx: np.ndarray) -> None:
        for f in schema.get("fields", []):
            self._value(self._resolve(f["type"]), (*path, f["name"]), idx, f["type"])

    def _value(self, schema: Any, path: tuple[str, ...], idx: np.ndarray, raw: Any) -> None:
        if not len(idx):
            return
        kind = avro_kind(schema)
        wanted = path in self.wanted
        if kind in ("record", "error"):
            self._record(schema, path, idx)
        elif kind == "union":
            branches = [self._resolve(b) for b in schema]
            branch = self._long(idx)
            null_at = next(i for i, b in enumerate(branches) if avro_kind(b) == "null")
            value_at = 1 - null_at
            self._fail(idx[(branch != null_at) & (branch != value_at)])
            self._value(branches[value_at], path, idx[branch == value_at], schema[value_at])
            if wanted:
                self._leaf(branches[value_at], path, schema[value_at])
        elif kind == "null":
            pass
        elif kind == "boolean":
            byte = self.buf[np.minimum(self.pos[idx], len(self.buf) - 1)]
            self._fail(idx[byte > 1])
            self.pos[idx] += 1
            if wanted:
                self._store(schema, path, raw, idx, byte == 1)
        elif kind in ("int", "long", "enum"):
            numbers = self._long(idx)
            if kind == "enum":
                self._fail(idx[(numbers < 0) | (numbers >= len(schema.get("symbols", [])))])
            if wanted:
                self._store(schema, path, raw, idx, numbers)
        elif kind in ("float", "double"):
            width = 4 if kind == "float" else 8
            where = np.minimum(self.pos[idx], len(self.buf) - PAD)
            gathered = self.buf[where[:, None] + np.arange(width)]
            self.pos[idx] += width
            if wanted:
                dtype = np.float32 if width == 4 else np.float64
                self._store(schema, path, raw, idx, gathered.copy().view(dtype).ravel())
        elif kind in ("string", "bytes"):
            size = self._long(idx)
            starts = self.pos[idx].copy()
            bad = (size < 0) | (starts + size > self.ends[idx])
            self._fail(idx[bad])
            size = np.where(bad, 0, size)
            self.pos[idx] += size
            leaf = self._leaf(schema, path, raw) if wanted else None
            if leaf is not None:
                leaf.starts[idx] = starts
                leaf.lengths[idx] = size
                leaf.valid[idx] = ~bad
        elif kind == "fixed":
            self.pos[idx] += int(schema["size"])
        else:  # checked at construction
            raise Unsupported(kind)

    def _leaf(self, schema: Any, path: tuple[str, ...], raw: Any) -> _Leaf | None:
        if path not in self.leaves and path in self.wanted:
            kind = avro_kind(schema)
            logical = schema.get("logicalType", "") if isinstance(schema, dict) else ""
            arrow_type = TIMESTAMP_LOGICAL_TYPES.get(logical)
            if kind in ("string", "bytes"):
                leaf_kind = "string"
                arrow_type = pa.string() if kind == "string" else pa.binary()
            elif kind == "enum":
                leaf_kind = "enum"
            elif kind in ("float", "double", "boolean"):
                leaf_kind = kind
            elif kind in ("int", "long"):
                leaf_kind = "long"
            else:
                leaf_kind = "null"
            symbols = schema.get("symbols") if kind == "enum" else None
            self.leaves[path] = _Leaf(leaf_kind, len(self.good), arrow_type, symbols)
        return self.leaves.get(path)

    def _store(self, schema, path, raw, idx, values) -> None:
        leaf = self._leaf(schema, path, raw)
        if leaf is None:
            return
        leaf.values[idx] = values
        leaf.valid[idx] = True

    def _long(self, idx: np.ndarray) -> np.ndarray:
        """Zig-zag varints at the positions of ``idx``; advances them."""
        start = self.pos[idx]
        values, consumed, overlong = read_varints(self.buf, start)
        self._fail(idx[overlong])
        self.pos[idx] = start + consumed
        return unzigzag(values)

    def _fail(self, idx: np.ndarray) -> None:
        if len(idx):
            self.good[idx] = False

    def _array(self, leaf: _Leaf | None, path: tuple[str, ...]) -> pa.Array | None:
        if leaf is None:
            return None if not self._exists(path) else pa.nulls(len(self.good))
        mask = ~leaf.valid
        if leaf.kind == "string":
            lengths = np.where(leaf.valid, leaf.lengths, 0)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            total = int(offsets[-1])
            gather = np.repeat(leaf.starts - offsets[:-1], lengths) + np.arange(total)
            data = self.buf[gather]
            array = pa.Array.from_buffers(
                pa.large_string() if leaf.arrow_type == pa.string() else pa.large_binary(),
                len(lengths),
                [
                    pa.py_buffer(np.packbits(leaf.valid, bitorder="little")),
                    pa.py_buffer(offsets),
                    pa.py_buffer(data),
                ],
            )
            if leaf.arrow_type == pa.string():
                array.validate(full=True)  # raises on invalid UTF-8: the caller falls back
                return array.cast(pa.string())
            return array.cast(pa.binary())
        if leaf.kind == "enum":
            usable = leaf.valid & (leaf.values >= 0) & (leaf.values < len(leaf.symbols))
            indices = pa.array(np.where(usable, leaf.values, 0), mask=~usable)
            return pa.array(leaf.symbols, pa.string()).take(indices)
        if leaf.kind == "null":
            return pa.nulls(len(mask))
        array = pa.array(leaf.values, mask=mask)
        if leaf.kind == "long":
            array = array.cast(pa.int64())
        if leaf.arrow_type is not None:
            if pa.types.is_date(leaf.arrow_type):
                array = array.cast(pa.int32())
            array = array.cast(leaf.arrow_type)
        return array

    def _exists(self, path: tuple[str, ...]) -> bool:
        node = self.root
        for part in path:
            node = self._resolve(node)
            if avro_kind(node) == "union":
                node = next(self._resolve(b) for b in node if avro_kind(self._resolve(b)) != "null")
            match = field_named(node, part) if is_record(node) else None
            if match is None:
                return False
            node = match["type"]
        return True
