"""A producer that writes header names as raw bytes, through the librdkafka the process loaded.

confluent-kafka's ``Producer`` takes header names as ``str`` and encodes them as
UTF-8, so it cannot write what a hostile or buggy producer in another language
can: a header name that is not UTF-8. This helper calls librdkafka's own
``rd_kafka_produceva`` (the same library confluent-kafka runs on, found like the
native reader finds it) so tests can put such a record on a real broker.
"""

from __future__ import annotations

import ctypes

import confluent_kafka  # noqa: F401 - loads the librdkafka this helper calls

from connectors.kafkabatch import _loaded_librdkafka

_VTYPE_END, _VTYPE_TOPIC, _VTYPE_VALUE, _VTYPE_KEY, _VTYPE_MSGFLAGS, _VTYPE_HEADER = (
    0,
    1,
    4,
    5,
    7,
    9,
)
_MSG_F_COPY = 0x2


class _Memory(ctypes.Structure):
    _fields_ = (("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t))


class _Header(ctypes.Structure):
    _fields_ = (("name", ctypes.c_char_p), ("val", ctypes.c_void_p), ("size", ctypes.c_ssize_t))


class _Value(ctypes.Union):
    _fields_ = (
        ("cstr", ctypes.c_char_p),
        ("mem", _Memory),
        ("i", ctypes.c_int),
        ("header", _Header),
        ("pad", ctypes.c_char * 64),
    )


class _VU(ctypes.Structure):
    """rd_kafka_vu_t: a value type and its value."""

    _fields_ = (("vtype", ctypes.c_int), ("u", _Value))


def _library() -> ctypes.CDLL:
    path = _loaded_librdkafka()
    if path is None:
        raise RuntimeError("librdkafka is not loaded")
    lib = ctypes.CDLL(path)
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = (
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
    )  # fmt: skip
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)
    lib.rd_kafka_produceva.restype = ctypes.c_void_p
    lib.rd_kafka_produceva.argtypes = (ctypes.c_void_p, ctypes.POINTER(_VU), ctypes.c_size_t)
    lib.rd_kafka_error_string.restype = ctypes.c_char_p
    lib.rd_kafka_error_string.argtypes = (ctypes.c_void_p,)
    lib.rd_kafka_error_destroy.argtypes = (ctypes.c_void_p,)
    lib.rd_kafka_flush.argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.rd_kafka_outq_len.argtypes = (ctypes.c_void_p,)
    lib.rd_kafka_destroy.argtypes = (ctypes.c_void_p,)
    return lib


def produce_raw(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes | None, list[tuple[bytes, bytes | None]]]],
    message_max_bytes: int = 1_000_000,
) -> None:
    """Produce (key, value, headers) records in order, header names as raw bytes, and wait
    until the broker has them all (``message_max_bytes``: the largest record to allow)."""
    lib = _library()
    error = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    settings = {
        b"bootstrap.servers": bootstrap.encode(),
        b"linger.ms": b"5",
        b"message.max.bytes": str(message_max_bytes).encode(),
        b"enable.idempotence": b"true",  # in order, once each
    }
    for name, value in settings.items():
        if lib.rd_kafka_conf_set(conf, name, value, error, len(error)) != 0:
            raise RuntimeError(error.value.decode())
    producer = lib.rd_kafka_new(0, conf, error, len(error))  # RD_KAFKA_PRODUCER
    if not producer:
        raise RuntimeError(error.value.decode())
    try:
        for key, value, headers in records:
            keep = [topic.encode(), key, value, *(v for _, v in headers)]
            vus = [
                _VU(_VTYPE_TOPIC, _Value(cstr=keep[0])),
                _VU(_VTYPE_MSGFLAGS, _Value(i=_MSG_F_COPY)),
            ]
            for vtype, data in ((_VTYPE_KEY, key), (_VTYPE_VALUE, value)):
                if data is not None:
                    vus.append(
                        _VU(
                            vtype,
                            _Value(
                                mem=_Memory(
                                    ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p), len(data)
                                )
                            ),
                        )
                    )
            for name, data in headers:
                pointer = (
                    None if data is None else ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p)
                )
                size = -1 if data is None else len(data)
                vus.append(_VU(_VTYPE_HEADER, _Value(header=_Header(name, pointer, size))))
            array = (_VU * len(vus))(*vus)
            failure = lib.rd_kafka_produceva(producer, array, len(vus))
            del keep
            if failure:
                message = lib.rd_kafka_error_string(failure).decode()
                lib.rd_kafka_error_destroy(failure)
                raise RuntimeError(f"produce failed: {message}")
        lib.rd_kafka_flush(producer, 30_000)
        if lib.rd_kafka_outq_len(producer) != 0:
            raise RuntimeError("records still queued after 30 s")
    finally:
        lib.rd_kafka_destroy(producer)
