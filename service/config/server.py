"""The ``server:`` section: where the service listens and the limits it puts on clients."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from service.config.auth import MIN_TOKEN_LENGTH
from service.config.base import Strict
from service.security.network import parse_network, valid_frame_ancestor, valid_host_pattern


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
    # What one client may make the engine do (service/security/cost.py, service/engine.py).
    engine_threads: int = Field(
        4, ge=1, le=64, description="worker threads running client requests off the event loop"
    )
    max_requests_per_second: float = Field(
        200.0, gt=0, description="requests per second per websocket session (bursts of as many)"
    )
    max_pending_requests: int = Field(
        256, ge=1, description="requests of one session waiting for the engine"
    )
    max_expressions_per_view: int = Field(10, ge=0, description="expressions in one view")
    max_expression_length: int = Field(1000, ge=1, description="characters in one expression")
    max_pivot_columns: int = Field(5, ge=1, description="columns in one group_by or split_by")
    max_view_cells: int = Field(
        2_000_000, ge=1000, description="estimated cells one view may hold (see README)"
    )
    max_session_cells: int = Field(
        10_000_000, ge=1000, description="estimated cells of all live views of one session"
    )
    max_serialized_cells: int = Field(
        1_000_000, ge=1000, description="rows x columns one to_arrow/to_csv/to_columns may return"
    )
    max_snapshot_bytes: int = Field(
        256 * 1024 * 1024,
        ge=64 * 1024,
        description="largest /replicate snapshot, allowed on top of max_client_buffer_bytes",
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

    # The HTTP port under attack: connection caps, timeouts, who is asking, under which name.
    # See service/web/server.py and service/security/network.py; defaults in the README.
    max_connections: int = Field(
        10000, ge=1, description="open TCP connections, all clients together (websockets included)"
    )
    max_connections_per_address: int = Field(
        500, ge=1, description="open TCP connections from one peer address (trusted proxies exempt)"
    )
    max_websocket_sessions: int = Field(4000, ge=1, description="open websocket sessions in total")
    max_websocket_sessions_per_address: int = Field(
        200, ge=1, description="open websocket sessions of one client address"
    )
    header_timeout_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="time to send a complete request header, counted from the end of the "
        "previous request on the connection (so it also closes idle keep-alive connections)",
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=4096, le=1024 * 1024, description="request line and headers, in bytes"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or CIDR ranges of proxies whose X-Forwarded-For/X-Real-Ip/"
        "X-Forwarded-Proto are believed",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the service answers to (exact, or *.example.com); "
        "empty: any. IP addresses are always accepted",
    )
    frame_ancestors: list[str] = Field(
        default_factory=list,
        description="origins allowed to frame the pages besides the service's own",
    )
    metrics_token: SecretStr | None = Field(
        None, description="bearer token /metrics requires when set (16+ characters)"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                parse_network(entry)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or CIDR range (like 10.0.0.0/8)"
                ) from None
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        bad = [h for h in value if not valid_host_pattern(h.strip().rstrip("."))]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not a host name or *.domain pattern (no scheme, no port)"
            )
        return value

    @field_validator("frame_ancestors")
    @classmethod
    def _ancestors(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if not valid_frame_ancestor(a)]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not an origin like https://grafana.example.com "
                "(https://*.example.com for subdomains)"
            )
        return value

    @field_validator("metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters")
        return value
