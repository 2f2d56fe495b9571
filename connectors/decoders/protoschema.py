"""Protobuf descriptors: loading them, from a file or a registry, and the columns they make.

A registry serves a schema as a base64 FileDescriptorProto or as .proto source;
source is compiled with protoc (grpcio-tools). A table may take its columns
from a message (:class:`ProtobufRecordSchema`): singular scalars, enums,
strings, ``google.protobuf.Timestamp`` and wrapper types, possibly nested in
singular messages (flattened: ``price.last`` becomes column ``price_last``).
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

_F = FieldDescriptor
# Field types by how they sit on the wire, and the integers among them.
VARINT_TYPES = {
    _F.TYPE_INT32,
    _F.TYPE_INT64,
    _F.TYPE_UINT32,
    _F.TYPE_UINT64,
    _F.TYPE_SINT32,
    _F.TYPE_SINT64,
    _F.TYPE_BOOL,
    _F.TYPE_ENUM,
}
FIXED64_TYPES = {_F.TYPE_FIXED64, _F.TYPE_SFIXED64, _F.TYPE_DOUBLE}
FIXED32_TYPES = {_F.TYPE_FIXED32, _F.TYPE_SFIXED32, _F.TYPE_FLOAT}
_INTEGER = (VARINT_TYPES | FIXED64_TYPES | FIXED32_TYPES) - {
    _F.TYPE_BOOL,
    _F.TYPE_ENUM,
    _F.TYPE_DOUBLE,
    _F.TYPE_FLOAT,
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
TIMESTAMP = "google.protobuf.Timestamp"


class ProtobufSchemaError(ValueError):
    """A descriptor that cannot be loaded, or a field no column can hold."""


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


def repeated(field: FieldDescriptor) -> bool:
    """Repeated (and map) fields; ``label`` is gone from newer protobuf runtimes."""
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    # The stubs describe the newer runtimes; protobuf < 6 has only ``label``.
    return field.label == _F.LABEL_REPEATED  # type: ignore[attr-defined]


def message_type(field: FieldDescriptor) -> Descriptor:
    """The type of a message field (the stubs cannot tie ``message_type`` to ``field.type``)."""
    message = field.message_type
    if message is None:
        raise ValueError(f"field {field.full_name} is not a message field")
    return message


def field_type(field: FieldDescriptor) -> str | None:
    if repeated(field):
        return None
    if field.type == _F.TYPE_MESSAGE:
        full = message_type(field).full_name
        if full == TIMESTAMP:
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
        and not repeated(field)
        and not message_type(field).GetOptions().map_entry
        and field_type(field) is None
    )


def type_name(field: FieldDescriptor) -> str:
    if field.type == _F.TYPE_MESSAGE:
        return f"message {message_type(field).full_name}"
    if field.type == _F.TYPE_BYTES:
        return "bytes"
    return f"type {field.type}"


def field_chain(descriptor: Descriptor, path: tuple[str, ...]) -> list[FieldDescriptor] | None:
    chain = []
    message: Descriptor | None = descriptor
    for part in path:
        if message is None or part not in message.fields_by_name:
            return None
        field = message.fields_by_name[part]
        chain.append(field)
        message = field.message_type if field.type == _F.TYPE_MESSAGE else None
    return chain


class ProtobufRecordSchema:
    """A Protobuf message seen as Perspective columns."""

    def __init__(self, descriptor: Descriptor):
        self.descriptor = descriptor

    def columns(self) -> tuple[dict[str, str], dict[str, str]]:
        """Columns of the message: (column -> type, column -> path for nested ones)."""
        columns: dict[str, str] = {}
        paths: dict[str, str] = {}

        def walk(message: Descriptor, prefix: tuple[str, ...], seen: tuple[str, ...]) -> None:
            for field in message.fields:
                path = (*prefix, field.name)
                if _is_plain_message(field):
                    inner = message_type(field)
                    if inner.full_name not in seen:
                        walk(inner, path, (*seen, inner.full_name))
                        continue
                kind = field_type(field)
                if kind is None:
                    what = "repeated" if repeated(field) else type_name(field)
                    raise ProtobufSchemaError(
                        f"field {'.'.join(path)!r} is {what}, which no Perspective column can "
                        "hold; list the columns you want in schema: (and fields: for nested ones)"
                    )
                name = "_".join(path)
                columns[name] = kind
                if len(path) > 1:
                    paths[name] = ".".join(path)

        walk(self.descriptor, (), (self.descriptor.full_name,))
        return columns, paths

    def path_type(self, path: tuple[str, ...]) -> str | None:
        """The Perspective type of the field at ``path`` (None if absent or unmappable)."""
        fields = field_chain(self.descriptor, path)
        return None if fields is None else field_type(fields[-1])
