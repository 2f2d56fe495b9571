"""Type stub of the native batch reader (``_kafkabatch.c``): what Python sees of it."""

from typing import Any

def bind(path: str) -> None:
    """Use the librdkafka shared library loaded from ``path`` (confluent-kafka's own)."""

class Reader:
    """Batches of a consumer's messages as columns (Arrow layout), no object per message."""

    def __init__(self, consumer: Any, client_id: str, capacity: int = 10000) -> None: ...
    def route(self, topic: str, partition: int) -> None: ...
    def read(
        self,
        max_messages: int,
        timeout_ms: int,
        linger_ms: int = 0,
        keys: bool = True,
        timestamps: bool = True,
        headers: bool = False,
    ) -> dict[str, Any] | None: ...
    def queued(self) -> int: ...
    def close(self) -> None: ...
