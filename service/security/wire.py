"""The protobuf wire format, just enough of it to read and write Perspective envelopes.

A protobuf message is a sequence of fields, each a varint key (``field_number << 3 |
wire_type``) followed by its value: a varint (wire type 0), 8 bytes (1), a varint
length then that many bytes (2), or 4 bytes (5). Wire types 3 and 4 (groups) are
obsolete and never produced for proto3 messages, so they are treated as malformed,
like truncated values, overlong varints and field number 0.

Reading never copies a length-delimited value: :func:`fields` yields offsets into
the original buffer, so walking the top level of a large message costs as many
steps as it has fields, whatever their sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VARINT = 0
FIXED64 = 1
LENGTH_DELIMITED = 2
FIXED32 = 5

MAX_FIELD_NUMBER = (1 << 29) - 1
_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field as found in a buffer.

    ``value`` is the integer of a varint or fixed field; for a length-delimited
    field it is the offset where the payload starts, and ``end`` where it stops.
    ``start`` is the offset of the field's key, so ``buf[start:end]`` is the whole
    field, ready to be copied verbatim.
    """

    number: int
    wire_type: int
    value: int
    start: int
    end: int

    def payload(self, buf: bytes | memoryview) -> bytes:
        if self.wire_type != LENGTH_DELIMITED:
            raise WireError(f"field {self.number} is not length-delimited")
        return bytes(buf[self.value : self.end])


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = 0
    shift = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos + i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result >> 64:
                raise WireError("varint larger than 64 bits")
            return result, pos + i + 1
        shift += 7
    raise WireError("varint longer than 10 bytes")


def fields(buf: bytes | memoryview) -> Iterator[Field]:
    """Every field of a message, in order; raises :class:`WireError` on malformed input."""
    pos = 0
    size = len(buf)
    while pos < size:
        start = pos
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0 or number > MAX_FIELD_NUMBER:
            raise WireError(f"invalid field number {number}")
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
            yield Field(number, wire_type, value, start, pos)
        elif wire_type in (FIXED64, FIXED32):
            width = 8 if wire_type == FIXED64 else 4
            if pos + width > size:
                raise WireError(f"truncated fixed-width field {number}")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
            yield Field(number, wire_type, value, start, pos)
        elif wire_type == LENGTH_DELIMITED:
            length, pos = read_varint(buf, pos)
            if length > size - pos:
                raise WireError(f"field {number} claims {length} bytes, {size - pos} remain")
            yield Field(number, wire_type, pos, start, pos + length)
            pos += length
        else:
            raise WireError(f"unsupported wire type {wire_type} (field {number})")


def utf8(buf: bytes | memoryview, field: Field) -> str:
    """A string field's text; raises :class:`WireError` if it is not valid UTF-8."""
    try:
        return field.payload(buf).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"field {field.number} is not valid UTF-8") from None


# -- writing ------------------------------------------------------------------


def varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def varint_field(number: int, value: int) -> bytes:
    return key(number, VARINT) + varint(value)


def bytes_field(number: int, payload: bytes) -> bytes:
    return key(number, LENGTH_DELIMITED) + varint(len(payload)) + payload


def string_field(number: int, text: str) -> bytes:
    return bytes_field(number, text.encode("utf-8"))
