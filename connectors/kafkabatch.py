"""The native batch reader (``connectors/_kafkabatch.c``), bound to the running librdkafka.

confluent-kafka builds a Python ``Message`` per record and each field read is a
method call, all under the GIL: at small records that is most of the consumer
thread's CPU. The native reader takes a whole batch off librdkafka into flat,
Arrow-shaped columns with the GIL released, and the confluent-kafka ``Consumer``
stays the control plane (configuration, assignment, watermarks, callbacks).

It must call the very librdkafka that the consumer runs on, never a second copy,
so it binds to the library file this process has already mapped (``/proc/self/maps``).
Where that is not possible (another platform, an unexpected confluent-kafka
build, the extension not compiled), :func:`open_reader` says why once and returns
None, and the source reads messages the portable way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

_kafkabatch: ModuleType | None
try:
    from connectors import _kafkabatch
except ImportError as exc:  # not compiled: the portable path is used
    _kafkabatch = None
    _IMPORT_ERROR: str | None = str(exc)
else:
    _IMPORT_ERROR = None

_bound: bool | None = None
_why_not: str | None = None


def _loaded_librdkafka() -> str | None:
    """The path of the librdkafka file mapped into this process, if any."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return None
    for line in maps.read_text().splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if "librdkafka" in Path(path).name:
            return path
    return None


def _bind() -> bool:
    global _bound, _why_not
    if _bound is not None:
        return _bound
    import confluent_kafka  # noqa: F401 - loads librdkafka, which the reader must share

    if _kafkabatch is None:
        _bound, _why_not = False, f"the native reader is not compiled ({_IMPORT_ERROR})"
        return False
    path = _loaded_librdkafka()
    if path is None:
        _bound, _why_not = False, "the loaded librdkafka cannot be found"
        return False
    try:
        _kafkabatch.bind(path)
    except ImportError as exc:
        _bound, _why_not = False, str(exc)
        return False
    _bound = True
    return True


def available() -> bool:
    """Whether the native reader can be used in this process."""
    return _bind()


def open_reader(consumer: object, client_id: str, capacity: int):
    """A native reader over ``consumer`` (created with ``client.id`` ``client_id``), or None."""
    global _why_not
    if not _bind() or _kafkabatch is None:
        _warn_once()
        return None
    try:
        return _kafkabatch.Reader(consumer, client_id, capacity)
    except (RuntimeError, TypeError) as exc:
        _why_not = str(exc)
        _warn_once()
        return None


_warned = False


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "Kafka messages are read through confluent-kafka's Python messages (slower): %s",
            _why_not,
        )
