"""Protobuf values: the Confluent wire format through a schema registry, or plain messages.

Framed records carry a schema id and the message indexes (zig-zag varints
naming the message inside the schema's .proto file; a single 0 byte means the
first message). Records are grouped by (schema id, message
indexes) and each registered schema is loaded once (``framed.py``,
``protoschema.py``). Plain records are messages of ``format_options.message``, described
by ``format_options.descriptor_file`` (``protoc --include_imports
--descriptor_set_out=FILE``).

A batch is read columnar with numpy when every column allows
(``protocolumns.py``). Otherwise the protobuf runtime parses one message per
call (upb, in C) in a tight Python loop: one ``FromString`` per record, then per column one
``attrgetter`` pass over the messages (dotted paths walk nested messages) and
one Arrow conversion. Fields with presence (messages, ``optional`` scalars,
wrapper types) are null when unset; ``google.protobuf.Timestamp`` becomes a
datetime, enums their value names. Measured with ``python -m bench.formats``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from connectors.base import DecodeError, DecodeReason, Locator
from connectors.decoders.framed import WIRE_HEADER, FramedDecoder, GroupKey
from connectors.decoders.protocolumns import ProtoColumnarReader, Unsupported
from connectors.decoders.protoschema import (
    ProtobufRecordSchema,
    ProtobufSchemaError,
    field_chain,
    field_type,
    load_descriptor_set,
    message_by_index,
    pool_from_registry,
    type_name,
)

_F = FieldDescriptor
_ARROW = {
    "float": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}


class _Column:
    """Reads one column from parsed messages: a getter plus a conversion."""

    def __init__(self, descriptor: Descriptor, path: tuple[str, ...]):
        self.absent = False
        chain = field_chain(descriptor, path) if path else None
        if not chain:
            self.absent = True
            return
        leaf = chain[-1]
        self.kind = field_type(leaf)
        if self.kind is None:
            raise ProtobufSchemaError(f"field {'.'.join(path)!r} is {type_name(leaf)}")
        self.arrow_type = pa.int64() if self.kind == "datetime" else _ARROW[self.kind]
        enum = leaf.enum_type if leaf.type == _F.TYPE_ENUM else None
        self.enum_names = {v.number: v.name for v in enum.values} if enum is not None else None
        self.wrapped = leaf.type == _F.TYPE_MESSAGE
        presence = [f for f in chain if f.has_presence]
        if not presence and not self.wrapped:
            self.get: Callable[[Any], Any] = attrgetter(".".join(path))
            return
        names = [f.name for f in chain]
        checks = [f.has_presence for f in chain]

        def get(message: Any) -> Any:
            for name, check in zip(names, checks, strict=True):
                if check and not message.HasField(name):
                    return None
                message = getattr(message, name)
            return message

        self.get = get

    def read(self, messages: list[Any]) -> pa.Array:
        if self.absent:
            return pa.nulls(len(messages))
        values = list(map(self.get, messages))
        if self.kind == "datetime":
            values = [
                None if m is None else m.seconds * 1000 + m.nanos // 1_000_000 for m in values
            ]
            return pa.array(values, pa.int64()).cast(pa.timestamp("ms"))
        if self.wrapped:
            values = [None if m is None else m.value for m in values]
        if self.enum_names is not None:
            names = self.enum_names
            values = [None if v is None else names.get(v, str(v)) for v in values]
        return pa.array(values, self.arrow_type)


class _Plan:
    """How to read messages of one type into the table's columns."""

    def __init__(self, descriptor: Descriptor, paths: dict[str, tuple[str, ...]]):
        self.parse = message_factory.GetMessageClass(descriptor).FromString
        self.columns = [_Column(descriptor, path) for path in paths.values()]
        try:
            self.columnar: ProtoColumnarReader | None = ProtoColumnarReader(
                descriptor, list(paths.values())
            )
        except Unsupported:
            self.columnar = None

    def complete(self, arrays: list[pa.Array | None], n: int) -> list[pa.Array]:
        """Columns the message type lacks are null."""
        return [pa.nulls(n) if a is None else a for a in arrays]


class ProtobufDecoder(FramedDecoder[_Plan]):
    name = "protobuf"
    options = frozenset({"descriptor_file", "message", "subject"})
    schema_type = "PROTOBUF"
    malformed = (DecodeReason.INVALID_PROTOBUF, "does not parse")

    @classmethod
    def uses_registry(cls, options) -> bool:
        return options.descriptor_file is None

    @classmethod
    def _record_schema(cls, options, registered) -> ProtobufRecordSchema:
        if registered is None:
            pool = load_descriptor_set(options.descriptor_file)
            file_name = None
        else:
            pool, file_name = pool_from_registry(registered.text, registered.references)
        if options.message:
            try:
                return ProtobufRecordSchema(pool.FindMessageTypeByName(options.message))
            except KeyError:
                raise ValueError(f"message {options.message!r} is not in the schema") from None
        assert file_name is not None
        return ProtobufRecordSchema(message_by_index(pool, file_name, ()))

    def __init__(self, spec, arrow_schema):
        # Registered schemas by id, loaded once: (descriptor pool, main file name).
        self._pools: dict[int, tuple[Any, str]] = {}
        super().__init__(spec, arrow_schema)

    def _plain_plan(self, options) -> _Plan:
        pool = load_descriptor_set(options.descriptor_file)
        try:
            descriptor = pool.FindMessageTypeByName(options.message)
        except KeyError:
            raise ProtobufSchemaError(
                f"message {options.message!r} is not in {options.descriptor_file}"
            ) from None
        return _Plan(descriptor, self._paths)

    def _registered_plan(self, registered, rest) -> _Plan:
        loaded = self._pools.get(registered.schema_id)
        if loaded is None:
            loaded = pool_from_registry(registered.text, registered.references)
            self._pools[registered.schema_id] = loaded
        pool, file_name = loaded
        return _Plan(message_by_index(pool, file_name, rest), self._paths)

    def _group_keys(
        self,
        values: list[bytes],
        ids: np.ndarray,
        framed: np.ndarray,
        starts: np.ndarray,
        locate: Locator,
        errors: list[DecodeError],
    ) -> dict[GroupKey, Iterable[int]]:
        """By (schema id, message indexes); the payload starts after the indexes.

        The common case, the first message of the schema, is a single 0 byte.
        """
        sixth = np.frombuffer(b"".join(v[5:6] or b"\xff" for v in values), dtype=np.uint8)
        first = framed & (sixth == 0)
        starts[first] = WIRE_HEADER + 1
        groups: dict[tuple[int, ...], Any] = {
            (schema_id,): np.flatnonzero(first & (ids == schema_id))
            for schema_id in np.unique(ids[first]).tolist()
        }
        for i in np.flatnonzero(framed & ~first).tolist():
            try:
                indexes, starts[i] = _message_indexes(values[i], WIRE_HEADER)
            except ValueError as exc:
                errors.append(DecodeError(*locate(i), DecodeReason.BAD_FRAMING, str(exc)))
                continue
            groups.setdefault((int(ids[i]), *indexes), []).append(i)
        return groups

    def _read_one_by_one(
        self,
        plan: _Plan,
        values: list[bytes],
        positions: np.ndarray,
        starts: np.ndarray,
        locate: Locator,
        errors: list[DecodeError],
    ) -> tuple[list[pa.Array | None], np.ndarray]:
        """The per-record loop: one runtime parse per message."""
        parse = plan.parse
        messages: list[Any] = []
        append = messages.append
        bad = []
        for i in positions.tolist():
            start = int(starts[i])
            try:
                append(parse(values[i][start:] if start else values[i]))
            except Exception as exc:  # DecodeError of the runtime, and friends
                bad.append(i)
                # proto3: "String field had bad UTF-8" (upb's words; otherwise invalid_protobuf)
                reason = (
                    DecodeReason.INVALID_UTF8
                    if "UTF-8" in str(exc)
                    else DecodeReason.INVALID_PROTOBUF
                )
                errors.append(DecodeError(*locate(i), reason, str(exc)[:200]))
        if bad:
            positions = np.setdiff1d(positions, np.array(bad, dtype=np.int64))
        try:
            arrays = [column.read(messages) for column in plan.columns]
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            messages, positions = _without_bytes_strings(plan, messages, positions, locate, errors)
            arrays = [column.read(messages) for column in plan.columns]
        return arrays, positions


def _without_bytes_strings(
    plan: _Plan,
    messages: list[Any],
    positions: np.ndarray,
    locate: Locator,
    errors: list[DecodeError],
) -> tuple[list[Any], np.ndarray]:
    """The messages without those whose string column holds bytes, each an ``invalid_utf8``.

    A proto3 runtime refuses to parse a string field that is not UTF-8; a proto2
    one hands it over as ``bytes`` instead, which no string column may hold.
    """
    text = [c for c in plan.columns if not c.absent and c.kind == "string"]
    keep = np.ones(len(messages), dtype=bool)
    for j, message in enumerate(messages):
        if any(isinstance(c.get(message), bytes) for c in text):
            keep[j] = False
            errors.append(
                DecodeError(*locate(int(positions[j])), DecodeReason.INVALID_UTF8, "a string field")
            )
    return [m for m, k in zip(messages, keep, strict=True) if k], positions[keep]


def _message_indexes(value: bytes, start: int) -> tuple[tuple[int, ...], int]:
    """Confluent message indexes (zig-zag varints: a count, then the indexes)."""
    count, pos = _zigzag(value, start)
    if count < 0 or count > 64:
        raise ValueError(f"bad message index count {count}")
    indexes = []
    for _ in range(count):
        index, pos = _zigzag(value, pos)
        indexes.append(index)
    return tuple(indexes), pos


def _zigzag(value: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(value) or shift > 63:
            raise ValueError("truncated message indexes")
        byte = value[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos
