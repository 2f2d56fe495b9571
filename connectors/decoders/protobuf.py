"""Protobuf values: the Confluent wire format through a schema registry, or plain messages.

Framed records carry a schema id and the message indexes (zig-zag varints
naming the message inside the schema's .proto file; a single 0 byte means the
first message). The registry's schema is either a base64 FileDescriptorProto
or .proto source; source is compiled with protoc (grpcio-tools) once per
schema id. Plain records are messages of ``format_options.message``, described
by ``format_options.descriptor_file`` (``protoc --include_imports
--descriptor_set_out=FILE``).

The protobuf runtime parses one message per call (upb, in C), so this module
keeps a tight Python loop: one ``FromString`` per record, then per column one
``attrgetter`` pass over the messages (dotted paths walk nested messages) and
one Arrow conversion. Fields with presence (messages, ``optional`` scalars,
wrapper types) are null when unset; ``google.protobuf.Timestamp`` becomes a
datetime, enums their value names. Measured with ``python -m bench.formats``.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from connectors.base import DecodeError, Decoder
from connectors.decoders.columns import CAST_ERRORS, coerce_columns, drop_failed, merge_pieces
from connectors.decoders.protocolumns import ProtoColumnarReader, Unsupported
from connectors.registry import RegistryUnavailable, UnknownSchema, registry_for, wire_ids

_F = FieldDescriptor
_INTEGER = {
    _F.TYPE_INT32,
    _F.TYPE_INT64,
    _F.TYPE_UINT32,
    _F.TYPE_UINT64,
    _F.TYPE_SINT32,
    _F.TYPE_SINT64,
    _F.TYPE_FIXED32,
    _F.TYPE_FIXED64,
    _F.TYPE_SFIXED32,
    _F.TYPE_SFIXED64,
}
_WRAPPERS = {
    "google.protobuf.DoubleValue": "float",
    "google.protobuf.FloatValue": "float",
    "google.protobuf.Int64Value": "integer",
    "google.protobuf.UInt64Value": "integer",
    "google.protobuf.Int32Value": "integer",
    "google.protobuf.UInt32Value": "integer",
    "google.protobuf.BoolValue": "boolean",
    "google.protobuf.StringValue": "string",
}
_TIMESTAMP = "google.protobuf.Timestamp"
_ARROW = {
    "float": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}


class ProtobufSchemaError(ValueError):
    """A descriptor that cannot be loaded, or a field no column can hold."""


# -- descriptors ------------------------------------------------------------------


def _pool_with(files: list[descriptor_pb2.FileDescriptorProto]) -> descriptor_pool.DescriptorPool:
    """A fresh pool holding ``files`` (in dependency order) and the well-known types."""
    pool = descriptor_pool.DescriptorPool()
    known = {f.name: f for f in files}
    added: set[str] = set()

    def add(proto: descriptor_pb2.FileDescriptorProto) -> None:
        if proto.name in added:
            return
        for dep in proto.dependency:
            if dep in known:
                add(known[dep])
            elif dep not in added:
                add(_well_known(dep))
        pool.Add(proto)
        added.add(proto.name)

    for proto in files:
        add(proto)
    return pool


def _well_known(name: str) -> descriptor_pb2.FileDescriptorProto:
    """A google/protobuf/*.proto file from the runtime's own descriptors."""
    try:
        found = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        module = name.removeprefix("google/protobuf/").removesuffix(".proto") + "_pb2"
        try:
            __import__(f"google.protobuf.{module}")
            found = descriptor_pool.Default().FindFileByName(name)
        except (ImportError, KeyError):
            raise ProtobufSchemaError(f"imported file {name!r} is not available") from None
    proto = descriptor_pb2.FileDescriptorProto()
    found.CopyToProto(proto)
    return proto


def load_descriptor_set(path: str) -> descriptor_pool.DescriptorPool:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProtobufSchemaError(f"cannot read descriptor_file: {exc.strerror or exc}") from None
    files = descriptor_pb2.FileDescriptorSet()
    try:
        files.ParseFromString(data)
    except Exception:
        raise ProtobufSchemaError(f"{path} is not a FileDescriptorSet") from None
    return _pool_with(list(files.file))


def _file_from_registry(name: str, text: str) -> descriptor_pb2.FileDescriptorProto | None:
    """A registry schema given as a base64 FileDescriptorProto; None if it is .proto source."""
    try:
        raw = base64.b64decode(text, validate=True)
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(raw)
    except (binascii.Error, ValueError, Exception):
        return None
    if not proto.message_type and not proto.enum_type:
        return None
    if not proto.name:
        proto.name = name
    return proto


def compile_sources(main: str, sources: dict[str, str]) -> list[descriptor_pb2.FileDescriptorProto]:
    """Compile .proto sources with protoc (from grpcio-tools); the main file comes last."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        raise ProtobufSchemaError(
            "this registry serves .proto source; compiling it needs grpcio-tools"
        ) from None
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory(prefix="livetables-proto-") as work:
        for name, text in sources.items():
            target = Path(work, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        out = Path(work, "set.pb")
        code = protoc.main(
            [
                "protoc",
                f"-I{work}",
                f"-I{include}",
                "--include_imports",
                f"--descriptor_set_out={out}",
                main,
            ]
        )
        if code != 0 or not out.exists():
            raise ProtobufSchemaError(f"protoc could not compile {main} from the registry")
        files = descriptor_pb2.FileDescriptorSet()
        files.ParseFromString(out.read_bytes())
    return list(files.file)


def pool_from_registry(text: str, references: dict[str, str]) -> tuple[Any, str]:
    """(pool, main file name) for a registry schema and its references."""
    main_name = "livetables_registry_schema.proto"
    parsed = [_file_from_registry(name, t) for name, t in references.items()]
    main = _file_from_registry(main_name, text)
    if main is not None and all(p is not None for p in parsed):
        return _pool_with([*(p for p in parsed if p is not None), main]), main.name
    files = compile_sources(main_name, {**references, main_name: text})
    return _pool_with(files), main_name


def message_by_index(pool, file_name: str, indexes: tuple[int, ...]) -> Descriptor:
    """The message that Confluent message indexes name inside a file."""
    file = pool.FindFileByName(file_name)
    candidates = list(file.message_types_by_name.values())
    descriptor = None
    for index in indexes or (0,):
        if index >= len(candidates):
            raise ProtobufSchemaError(f"message index {list(indexes)} is not in the schema")
        descriptor = candidates[index]
        candidates = list(descriptor.nested_types)
    assert descriptor is not None
    return descriptor


# -- columns ------------------------------------------------------------------------


def _repeated(field: FieldDescriptor) -> bool:
    """Repeated (and map) fields; ``label`` is gone from newer protobuf runtimes."""
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return field.label == _F.LABEL_REPEATED


def _field_type(field: FieldDescriptor) -> str | None:
    if _repeated(field):
        return None
    if field.type == _F.TYPE_MESSAGE:
        full = field.message_type.full_name
        if full == _TIMESTAMP:
            return "datetime"
        return _WRAPPERS.get(full)
    if field.type in _INTEGER:
        return "integer"
    if field.type in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return "float"
    if field.type == _F.TYPE_BOOL:
        return "boolean"
    if field.type in (_F.TYPE_STRING, _F.TYPE_ENUM):
        return "string"
    return None


def _is_plain_message(field: FieldDescriptor) -> bool:
    return (
        field.type == _F.TYPE_MESSAGE
        and not _repeated(field)
        and not field.message_type.GetOptions().map_entry
        and _field_type(field) is None
    )


def derive_columns(descriptor: Descriptor) -> tuple[dict[str, str], dict[str, str]]:
    """Columns of a message: (column -> type, column -> path for nested ones)."""
    columns: dict[str, str] = {}
    paths: dict[str, str] = {}

    def walk(message: Descriptor, prefix: tuple[str, ...], seen: tuple[str, ...]) -> None:
        for field in message.fields:
            path = (*prefix, field.name)
            if _is_plain_message(field) and field.message_type.full_name not in seen:
                walk(field.message_type, path, (*seen, field.message_type.full_name))
                continue
            kind = _field_type(field)
            if kind is None:
                what = "repeated" if _repeated(field) else _type_name(field)
                raise ProtobufSchemaError(
                    f"field {'.'.join(path)!r} is {what}, which no Perspective column can hold; "
                    "list the columns you want in schema: (and fields: for nested ones)"
                )
            name = "_".join(path)
            columns[name] = kind
            if len(path) > 1:
                paths[name] = ".".join(path)

    walk(descriptor, (), (descriptor.full_name,))
    return columns, paths


def path_type(descriptor: Descriptor, path: tuple[str, ...]) -> str | None:
    fields = _field_chain(descriptor, path)
    return None if fields is None else _field_type(fields[-1])


def _type_name(field: FieldDescriptor) -> str:
    if field.type == _F.TYPE_MESSAGE:
        return f"message {field.message_type.full_name}"
    if field.type == _F.TYPE_BYTES:
        return "bytes"
    return f"type {field.type}"


def _field_chain(descriptor: Descriptor, path: tuple[str, ...]) -> list[FieldDescriptor] | None:
    chain = []
    message: Descriptor | None = descriptor
    for part in path:
        if message is None or part not in message.fields_by_name:
            return None
        field = message.fields_by_name[part]
        chain.append(field)
        message = field.message_type if field.type == _F.TYPE_MESSAGE else None
    return chain


class _Column:
    """Reads one column from parsed messages: a getter plus a conversion."""

    def __init__(self, descriptor: Descriptor, path: tuple[str, ...]):
        self.absent = False
        chain = _field_chain(descriptor, path) if path else None
        if not chain:
            self.absent = True
            return
        leaf = chain[-1]
        self.kind = _field_type(leaf)
        if self.kind is None:
            raise ProtobufSchemaError(f"field {'.'.join(path)!r} is {_type_name(leaf)}")
        self.arrow_type = pa.int64() if self.kind == "datetime" else _ARROW[self.kind]
        self.enum_names = (
            {v.number: v.name for v in leaf.enum_type.values} if leaf.type == _F.TYPE_ENUM else None
        )
        self.wrapped = leaf.type == _F.TYPE_MESSAGE
        presence = [f for f in chain if f.has_presence]
        if not presence and not self.wrapped:
            self.get = attrgetter(".".join(path))
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
    def __init__(self, descriptor: Descriptor, paths: dict[str, tuple[str, ...]]):
        self.parse = message_factory.GetMessageClass(descriptor).FromString
        self.columns = [_Column(descriptor, path) for path in paths.values()]
        try:
            self.columnar: ProtoColumnarReader | None = ProtoColumnarReader(
                descriptor, list(paths.values())
            )
        except Unsupported:
            self.columnar = None


class ProtobufDecoder(Decoder):
    name = "protobuf"

    def __init__(self, spec, arrow_schema):
        super().__init__(spec, arrow_schema)
        self._paths = {f.name: spec.paths.get(f.name, (f.name,)) for f in arrow_schema}
        self._registry = None
        self._plain: _Plan | None = None
        self._schemas: dict[int, tuple[Any, str] | None] = {}
        self._plans: dict[tuple[int, tuple[int, ...]], _Plan] = {}
        if spec.options.uses_registry("protobuf"):
            if spec.registry is None:
                raise ProtobufSchemaError("protobuf without a descriptor needs a registry")
            self._registry = registry_for(spec.registry)
        else:
            pool = load_descriptor_set(spec.options.descriptor_file)
            try:
                descriptor = pool.FindMessageTypeByName(spec.options.message)
            except KeyError:
                raise ProtobufSchemaError(
                    f"message {spec.options.message!r} is not in {spec.options.descriptor_file}"
                ) from None
            self._plain = _Plan(descriptor, self._paths)

    def _plan(self, schema_id: int, indexes: tuple[int, ...]) -> _Plan:
        plan = self._plans.get((schema_id, indexes))
        if plan is not None:
            return plan
        assert self._registry is not None
        loaded = self._schemas.get(schema_id)
        if loaded is None:
            registered = self._registry.schema(schema_id)
            if registered.schema_type != "PROTOBUF":
                raise UnknownSchema(
                    f"schema id {schema_id} is {registered.schema_type}, not PROTOBUF"
                )
            loaded = pool_from_registry(registered.text, registered.references)
            self._schemas[schema_id] = loaded
        pool, file_name = loaded
        plan = _Plan(message_by_index(pool, file_name, indexes), self._paths)
        self._plans[(schema_id, indexes)] = plan
        return plan

    def decode_values(self, values, locate):
        errors: list[DecodeError] = []
        if self._plain is not None:
            rows, positions = self._read(
                self._plain,
                values,
                np.arange(len(values), dtype=np.int64),
                np.zeros(len(values), dtype=np.int64),
                locate,
                errors,
            )
            return rows, positions, errors
        ids, framed = wire_ids(values)
        for i in np.flatnonzero(~framed):
            errors.append(
                DecodeError(*locate(int(i)), "bad_framing", "not in the schema registry framing")
            )
        # Group by (schema id, message indexes); the payload starts after the indexes.
        # The common case, the first message of the schema, is a single 0 byte.
        sixth = np.frombuffer(b"".join(v[5:6] or b"\xff" for v in values), dtype=np.uint8)
        first = framed & (sixth == 0)
        starts = np.full(len(values), 6, dtype=np.int64)
        groups: dict[tuple[int, tuple[int, ...]], list[int] | np.ndarray] = {}
        for schema_id in np.unique(ids[first]).tolist():
            groups[(schema_id, ())] = np.flatnonzero(first & (ids == schema_id))
        for i in np.flatnonzero(framed & ~first).tolist():
            try:
                indexes, starts[i] = _message_indexes(values[i], 5)
            except ValueError as exc:
                errors.append(DecodeError(*locate(i), "bad_framing", str(exc)))
                continue
            members = groups.setdefault((int(ids[i]), indexes), [])
            assert isinstance(members, list)
            members.append(i)
        pieces = []
        for (schema_id, indexes), members in groups.items():
            try:
                plan = self._plan(schema_id, indexes)
            except (UnknownSchema, RegistryUnavailable, ProtobufSchemaError) as exc:
                reason = (
                    "registry_unavailable"
                    if isinstance(exc, RegistryUnavailable)
                    else "unknown_schema"
                )
                errors.extend(DecodeError(*locate(i), reason, str(exc)[:200]) for i in members)
                continue
            rows, kept = self._read(
                plan, values, np.sort(np.asarray(members, dtype=np.int64)), starts, locate, errors
            )
            if rows.num_rows:
                pieces.append((rows, kept))
        rows, positions = merge_pieces(pieces, self.arrow_schema)
        return rows, positions, errors

    def _read(self, plan: _Plan, values, positions, starts, locate, errors):
        """Decode the values at ``positions``, whose messages begin at ``starts``."""
        if plan.columnar is not None:
            subset = values if len(positions) == len(values) else [values[i] for i in positions]
            try:
                arrays, good = plan.columnar.read(subset, starts[positions])
            except (*CAST_ERRORS, pa.ArrowException):
                pass  # invalid UTF-8 somewhere: find it record by record below
            else:
                arrays, positions, failed = drop_failed(arrays, good, positions)
                errors.extend(
                    DecodeError(*locate(int(i)), "invalid_protobuf", "does not parse")
                    for i in failed
                )
                arrays = [pa.nulls(len(positions)) if a is None else a for a in arrays]
                return self._typed(arrays, positions, locate, errors)
        return self._read_one_by_one(plan, values, positions, starts, locate, errors)

    def _read_one_by_one(self, plan: _Plan, values, positions, starts, locate, errors):
        """The per-record loop: one runtime parse per message."""
        parse = plan.parse
        messages = []
        append = messages.append
        bad = []
        for i in positions.tolist():
            start = int(starts[i])
            try:
                append(parse(values[i][start:] if start else values[i]))
            except Exception as exc:  # DecodeError of the runtime, and friends
                bad.append(i)
                # proto3: "String field had bad UTF-8" (upb's words; otherwise invalid_protobuf)
                reason = "invalid_utf8" if "UTF-8" in str(exc) else "invalid_protobuf"
                errors.append(DecodeError(*locate(i), reason, str(exc)[:200]))
        if bad:
            positions = np.setdiff1d(positions, np.array(bad, dtype=np.int64))
        try:
            arrays = [column.read(messages) for column in plan.columns]
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            messages, positions = _without_bytes_strings(plan, messages, positions, locate, errors)
            arrays = [column.read(messages) for column in plan.columns]
        return self._typed(arrays, positions, locate, errors)

    def _typed(self, arrays, positions, locate, errors):
        rows, keep, why = coerce_columns(arrays, self.arrow_schema)
        if keep is not None:
            errors.extend(
                DecodeError(*locate(int(i)), "type_mismatch", w)
                for i, w in zip(positions[~keep], why, strict=False)
            )
            positions = positions[keep]
        return rows, positions


def _without_bytes_strings(plan: _Plan, messages: list, positions: np.ndarray, locate, errors):
    """The messages without those whose string column holds bytes, each an ``invalid_utf8``.

    A proto3 runtime refuses to parse a string field that is not UTF-8; a proto2
    one hands it over as ``bytes`` instead, which no string column may hold.
    """
    text = [c for c in plan.columns if not c.absent and c.kind == "string"]
    keep = np.ones(len(messages), dtype=bool)
    for j, message in enumerate(messages):
        if any(isinstance(c.get(message), bytes) for c in text):
            keep[j] = False
            errors.append(DecodeError(*locate(int(positions[j])), "invalid_utf8", "a string field"))
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
