"""Thread names the operating system sees, so CPU time can be told apart per thread.

Python's ``threading.Thread(name=...)`` names a thread for Python only; ``top -H``,
``/proc/<pid>/task/*/comm`` and profilers see every thread as the process. The
benchmark reads each thread's CPU time from ``/proc`` to account for every
microsecond of a record's path, so the threads that carry records name
themselves: ``kafka-<table>``, ``applier``, ``replicator`` (librdkafka names its own
threads ``rdk:*``). Linux keeps at most 15 bytes of a name.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_PR_SET_NAME = 15
_MAX_BYTES = 15

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        _libc = None


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` (cut to 15 bytes) where the OS keeps thread names."""
    if _libc is None:
        return
    encoded = name.encode("utf-8", "replace")[:_MAX_BYTES]
    _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(encoded), 0, 0, 0)
