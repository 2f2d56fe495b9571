"""Columnar Protobuf decoding: a whole batch of messages of one type with numpy.

Every message is a sequence of (tag, value) pairs. The batch is decoded in
lockstep: one position per message, and each round reads one pair from every
message that has bytes left, with vectorised varint, fixed-width and
length-delimited reads. A field seen again overwrites the earlier value (as
protobuf does for scalars); unknown fields and fields of an unexpected wire
type are skipped, as the runtime keeps them aside (without checking them: a
string field no column reads is not checked for valid UTF-8). Nested messages on a
column's path are decoded the same way over their byte ranges.

Columns must be singular scalars, enums, strings, ``google.protobuf.Timestamp``
or wrapper types, possibly nested in singular messages: what a Perspective
column can hold. Fields with presence (messages, ``optional`` scalars) are null
when absent, others take their default. A message whose bytes do not parse
(a truncated value, a bad wire type, a length past its end) is reported bad.
Invalid UTF-8 in a string column raises, and the caller parses record by record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from connectors.decoders.protoschema import (
    FIXED32_TYPES,
    FIXED64_TYPES,
    TIMESTAMP,
    VARINT_TYPES,
    message_type,
    repeated,
)
from connectors.decoders.varints import PAD, read_varints, unzigzag

_F = FieldDescriptor
# The wire type each field type is read with (0 varint, 1 fixed64, 5 fixed32, 2 delimited).
_WIRE = {**dict.fromkeys(VARINT_TYPES, 0), **dict.fromkeys(FIXED64_TYPES, 1)}
_WIRE.update({**dict.fromkeys(FIXED32_TYPES, 5), _F.TYPE_STRING: 2, _F.TYPE_MESSAGE: 2})
_MAX_FIELD = 2**29 - 1


class Unsupported(Exception):
    """A column this decoder leaves to the record-by-record path."""


class _Node:
    """What to read from one message type: leaf fields and nested messages, by number."""

    def __init__(self) -> None:
        self.leaves: dict[int, list[tuple[FieldDescriptor, Any]]] = {}  # number -> (field, key)s
        self.children: dict[int, tuple[FieldDescriptor, _Node]] = {}


class ProtoColumnarReader:
    def __init__(self, descriptor: Descriptor, paths: list[tuple[str, ...]]):
        self.root = _Node()
        self.paths = paths
        self.kinds: dict[int, str] = {}  # column -> presence | default | wrapper | timestamp
        self.leaf_fields: dict[int, FieldDescriptor] = {}
        self.top_level: set[int] = set()
        for column, path in enumerate(paths):
            self._add(descriptor, path, column)

    def _add(self, descriptor: Descriptor, path: tuple[str, ...], column: int) -> None:
        if not path:
            raise Unsupported("the whole message as a column")
        node = self.root
        message: Descriptor | None = descriptor
        for depth, part in enumerate(path):
            if message is None or part not in message.fields_by_name:
                return  # not in this message type: the column stays null
            field = message.fields_by_name[part]
            if repeated(field) or field.type not in _WIRE:
                raise Unsupported(f"field {part} of type {field.type}")
            last = depth == len(path) - 1
            if field.type != _F.TYPE_MESSAGE:
                if last:
                    node.leaves.setdefault(field.number, []).append((field, (column, "v")))
                    self.leaf_fields[column] = field
                    self.kinds[column] = "presence" if field.has_presence else "default"
                    if depth == 0:
                        self.top_level.add(column)
                return
            node = self._child(node, field)
            message = message_type(field)
            if not last:
                continue
            inner = message.fields_by_name
            if message.full_name == TIMESTAMP:
                node.leaves.setdefault(1, []).append((inner["seconds"], (column, "s")))
                node.leaves.setdefault(2, []).append((inner["nanos"], (column, "n")))
                self.kinds[column] = "timestamp"
            elif message.full_name.startswith("google.protobuf.") and "value" in inner:
                node.leaves.setdefault(1, []).append((inner["value"], (column, "v")))
                self.leaf_fields[column] = inner["value"]
                self.kinds[column] = "wrapper"
            else:
                raise Unsupported("a message as a column")
            return

    @staticmethod
    def _child(node: _Node, field: FieldDescriptor) -> _Node:
        found = node.children.get(field.number)
        if found is None:
            found = (field, _Node())
            node.children[field.number] = found
        return found[1]

    # -- decoding ---------------------------------------------------------------

    def read(self, values: list[bytes], starts_at: np.ndarray) -> tuple[list[Any], np.ndarray]:
        """(one array per path, None for a path the message lacks; mask of good messages)."""
        n = len(values)
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        ends = np.cumsum(lengths)
        self.buf = np.frombuffer(b"".join(values) + bytes(PAD), dtype=np.uint8)
        self.good = starts_at <= lengths
        self.n = n
        self.out: dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._message(self.root, np.arange(n), ends - lengths + starts_at, ends)
        return [self._column(c) for c in range(len(self.paths))], self.good

    def _message(self, node: _Node, idx: np.ndarray, pos: np.ndarray, ends: np.ndarray) -> None:
        """Read every (tag, value) of the messages ``idx``, spanning [pos, ends)."""
        pos = pos.copy()
        # Byte ranges of nested messages on some column's path (the last one wins).
        nested = {
            number: (np.full(len(idx), -1, np.int64), np.zeros(len(idx), np.int64))
            for number in node.children
        }
        active = np.flatnonzero(pos < ends)
        while len(active):
            tag = self._varint(pos, active, idx)
            number = (tag >> np.uint64(3)).astype(np.int64)
            wire = (tag & np.uint64(7)).astype(np.int64)
            width = np.zeros(len(active), np.int64)
            width[wire == 1] = 8
            width[wire == 5] = 4
            bad = (wire > 5) | (wire == 3) | (wire == 4) | (number == 0) | (number > _MAX_FIELD)
            value = np.zeros(len(active), np.uint64)
            is_varint = wire == 0
            if is_varint.any():
                value[is_varint] = self._varint(pos, active[is_varint], idx)
            delimited = wire == 2
            if delimited.any():
                size = self._varint(pos, active[delimited], idx).astype(np.int64)
                width[delimited] = size
                bad[delimited] |= size < 0
            fixed = (wire == 1) | (wire == 5)
            if fixed.any():
                at = np.minimum(pos[active[fixed]], len(self.buf) - PAD)
                bits = self.buf[at[:, None] + np.arange(8)].copy().view(np.uint64).ravel()
                value[fixed] = np.where(wire[fixed] == 5, bits & np.uint64(0xFFFFFFFF), bits)
            starts = pos[active].copy()
            pos[active] += np.where(bad, 0, width)
            bad |= pos[active] > ends[active]
            if bad.any():
                self.good[idx[active[bad]]] = False
            ok = ~bad
            for field_number, targets in node.leaves.items():
                for field, key in targets:
                    hit = ok & (number == field_number) & (wire == _WIRE[field.type])
                    if hit.any():
                        records = idx[active[hit]]
                        raw, span, _, seen = self._entry(key)
                        raw[records] = value[hit]
                        span[records, 0] = starts[hit]
                        span[records, 1] = width[hit]
                        seen[records] = True
            for field_number in node.children:
                hit = ok & (number == field_number) & (wire == 2)
                if hit.any():
                    where, size = nested[field_number]
                    where[active[hit]] = starts[hit]
                    size[active[hit]] = width[hit]
            active = active[ok & (pos[active] < ends[active])]
        for child_number, (_, child) in node.children.items():
            where, size = nested[child_number]
            present = where >= 0
            if present.any():
                for targets in child.leaves.values():
                    for _, key in targets:
                        self._entry(key)[2][idx[present]] = True
                self._message(child, idx[present], where[present], where[present] + size[present])

    def _entry(self, key) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(raw value bits, string (start, length), parent message present, field seen)."""
        found = self.out.get(key)
        if found is None:
            found = (
                np.zeros(self.n, np.uint64),
                np.zeros((self.n, 2), np.int64),
                np.zeros(self.n, bool),
                np.zeros(self.n, bool),
            )
            self.out[key] = found
        return found

    def _varint(self, pos: np.ndarray, which: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Varints at ``pos[which]``, advancing those positions."""
        start = pos[which]
        values, consumed, overlong = read_varints(self.buf, start)
        if overlong.any():
            self.good[idx[which[overlong]]] = False
        pos[which] = start + consumed
        return values

    # -- columns ------------------------------------------------------------------

    def _column(self, column: int) -> pa.Array | None:
        kind = self.kinds.get(column)
        if kind is None:
            return None
        if kind == "timestamp":
            _, _, present, _ = self._entry((column, "s"))
            s_raw, _, _, s_seen = self._entry((column, "s"))
            n_raw, _, _, n_seen = self._entry((column, "n"))
            seconds = np.where(s_seen, s_raw, np.uint64(0)).view(np.int64)
            nanos = np.where(n_seen, n_raw, np.uint64(0)).astype(np.uint32).view(np.int32)
            millis = seconds * 1000 + nanos.astype(np.int64) // 1_000_000
            return pa.array(millis, mask=~present).cast(pa.timestamp("ms"))
        raw, span, parent, seen = self._entry((column, "v"))
        if column in self.top_level:
            parent = np.ones(self.n, bool)
        valid = parent & seen if kind == "presence" else parent
        return self._typed(self.leaf_fields[column], raw, span, seen, valid)

    def _typed(self, field, raw, span, seen, valid) -> pa.Array:
        kind = field.type
        mask = ~valid
        if kind == _F.TYPE_STRING:
            lengths = np.where(seen & valid, span[:, 1], 0)
            offsets = np.zeros(self.n + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            gather = np.repeat(span[:, 0] - offsets[:-1], lengths) + np.arange(int(offsets[-1]))
            array = pa.Array.from_buffers(
                pa.large_string(),
                self.n,
                [
                    pa.py_buffer(np.packbits(valid, bitorder="little")),
                    pa.py_buffer(offsets),
                    pa.py_buffer(self.buf[gather]),
                ],
            )
            array.validate(full=True)  # invalid UTF-8 raises: the caller goes record by record
            return array.cast(pa.string())
        value = np.where(seen, raw, np.uint64(0))
        if kind == _F.TYPE_DOUBLE:
            return pa.array(value.view(np.float64), mask=mask)
        if kind == _F.TYPE_FLOAT:
            as_float = value.astype(np.uint32).view(np.float32).astype(np.float64)
            return pa.array(as_float, mask=mask)
        if kind == _F.TYPE_BOOL:
            return pa.array(value != 0, mask=mask)
        if kind in (_F.TYPE_SINT32, _F.TYPE_SINT64):
            return pa.array(unzigzag(value), mask=mask)
        if kind in (_F.TYPE_INT32, _F.TYPE_SFIXED32, _F.TYPE_ENUM):
            numbers = value.astype(np.uint32).view(np.int32).astype(np.int64)
            if kind != _F.TYPE_ENUM:
                return pa.array(numbers, mask=mask)
            names = {v.number: v.name for v in field.enum_type.values}
            known = np.array(sorted(names), dtype=np.int64)
            labels = pa.array([names[k] for k in known.tolist()], pa.string())
            where = np.minimum(np.searchsorted(known, numbers), len(known) - 1)
            found = known[where] == numbers
            text = labels.take(pa.array(where, mask=~found))
            text = pc.coalesce(text, pc.cast(pa.array(numbers), pa.string()))
            return pc.if_else(pa.array(valid), text, pa.scalar(None, pa.string()))
        if kind in (_F.TYPE_FIXED32, _F.TYPE_UINT32):
            return pa.array(value.astype(np.uint32).astype(np.int64), mask=mask)
        return pa.array(value.view(np.int64), mask=mask)  # int64, uint64, (s)fixed64
