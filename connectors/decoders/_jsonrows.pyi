"""Type stub of the JSON fast path (``_jsonrows.c``): what Python sees of it."""

from typing import Any

def parse(
    count: int, offsets: Any, data: Any, columns: list[tuple[bytes, int]]
) -> list[tuple[bytes | None, bytes, bytes | None, int]] | None:
    """Per column (validity, data, string offsets, null count), or None where it declines."""
