"""The ``server:`` section: where the service listens and the limits it puts on clients."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from service.config.base import Strict


class ServerConfig(Strict):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    max_client_buffer_bytes: int = Field(
        32 * 1024 * 1024,
        ge=64 * 1024,
        description="bytes queued for one websocket client before it is disconnected as too slow",
    )
    # Websocket limits (see service/security/guard.py) and keepalive.
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="largest request a websocket client may send"
    )
    max_views_per_session: int = Field(100, ge=1, description="live views per websocket")
    max_rejected_requests: int = Field(
        100, ge=1, description="refused requests after which a websocket session is closed"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to open websockets besides the server's own ('*': any)",
    )
    websocket_ping_interval_seconds: float = Field(20.0, gt=0)
    websocket_ping_timeout_seconds: float = Field(20.0, gt=0)

    @field_validator("websocket_ping_timeout_seconds")
    @classmethod
    def _timeout_within_interval(cls, value: float, info: Any) -> float:
        interval = info.data.get("websocket_ping_interval_seconds")
        if interval is not None and value > interval:
            raise ValueError("must not be longer than websocket_ping_interval_seconds")
        return value
