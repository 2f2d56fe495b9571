"""Varints of a whole batch at once, for the columnar Avro and Protobuf readers.

Both encodings store integers as base-128 varints (Avro zig-zag encodes every
int and long; Protobuf its ``sint`` fields). One vectorised step per byte reads
the varint at every position at once: ten steps at most, usually one or two.
"""

from __future__ import annotations

import numpy as np

#: bytes the readers append to a batch's buffer, so a read past a record's end stays inside it
PAD = 16


def read_varints(buf: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unsigned varints beginning at ``start`` in ``buf`` (padded with PAD bytes).

    Returns the values (uint64), the bytes each took, and a mask of the varints
    that ran over ten bytes (malformed: their record is a bad one).
    """
    at = np.minimum(start, len(buf) - PAD)
    result = np.zeros(len(start), np.uint64)
    consumed = np.zeros(len(start), np.int64)
    going = np.ones(len(start), bool)
    for k in range(10):
        byte = buf[at + k].astype(np.uint64)
        result |= np.where(going, (byte & np.uint64(0x7F)) << np.uint64(7 * k), 0).astype(np.uint64)
        consumed += going
        going &= (byte & np.uint64(0x80)) != 0
        if not going.any():
            break
    return result, consumed, going


def unzigzag(values: np.ndarray) -> np.ndarray:
    """Zig-zag encoded uint64 values as the signed int64 they stand for."""
    return (values >> np.uint64(1)).astype(np.int64) ^ -(values & np.uint64(1)).astype(np.int64)
