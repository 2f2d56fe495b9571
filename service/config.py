"""The livetables configuration: one YAML file, validated by typed models.

Every scalar can be overridden from the environment with the ``LIVETABLES_``
prefix and ``__`` between nested keys (``LIVETABLES_KAFKA__BOOTSTRAP_SERVERS``,
``LIVETABLES_TABLES__TRADES__LIMIT``), which is how a Helm chart injects
secrets without writing them into a ConfigMap. A file that does not validate
raises :class:`ConfigError` listing every problem with its key path, so a bad
file never starts half a service.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from service.dashboards import viewer_errors
from service.formatconfig import (
    KNOWN_FORMATS,
    SCHEMA_FORMATS,
    FormatOptions,
    KeyConfig,
    MetadataConfig,
    SchemaRegistryConfig,
    add_extra_columns,
    table_problems,
)
from service.security.network import parse_network, valid_frame_ancestor, valid_host_pattern
from service.security.settings import MIN_TOKEN_LENGTH, AuthConfig

ColumnType = Literal["string", "integer", "float", "boolean", "date", "datetime"]
"""The column types a Perspective table knows."""

TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
LOOKBACK = re.compile(r"^-(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(Exception):
    """A configuration that cannot be used; ``errors`` holds one line per problem."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: invalid configuration\n" + "\n".join(f"  {e}" for e in errors))


class Strict(BaseModel):
    """Base for every section: unknown keys are typos, and typos are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(Strict):
    bootstrap_servers: str = "localhost:9092"
    client: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="librdkafka properties passed verbatim (security.protocol, sasl.*, ssl.*)",
    )
    schema_registry: SchemaRegistryConfig | None = None

    @field_validator("client")
    @classmethod
    def _no_managed_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        managed = {"bootstrap.servers", "group.id", "enable.auto.commit"}
        clash = sorted(managed & set(value))
        if clash:
            raise ValueError(
                f"{', '.join(clash)} cannot be set here: livetables manages "
                "them (use kafka.bootstrap_servers for the brokers)"
            )
        return value


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


StartPolicy = Annotated[str, Field(description="earliest | latest | -<duration> (-15m, -2h)")]


def lookback(start: str) -> timedelta | None:
    """The time window of a ``-15m`` style start policy, or None for earliest/latest."""
    match = LOOKBACK.match(start)
    if match is None:
        return None
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class TableConfig(Strict):
    topic: str | None = None
    topics: list[str] | None = None
    format: str = "json"
    # Optional for avro and protobuf: then derived from the record schema at start-up.
    schema_: dict[str, ColumnType] | None = Field(
        None, alias="schema", min_length=1, validate_default=True
    )
    index: str | None = None
    limit: int | None = Field(None, gt=0)
    start: StartPolicy = "earliest"
    editable: bool = False
    dead_letter_topic: str | None = None
    max_record_bytes: int = Field(1024 * 1024, gt=0)
    format_options: FormatOptions = Field(default_factory=FormatOptions)
    fields: dict[str, str] = Field(default_factory=dict, description="column: path.in.record")
    key: KeyConfig | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="column: header name")
    metadata: MetadataConfig | None = None

    _with_extra_columns = model_validator(mode="before")(add_extra_columns)

    @field_validator("schema_")
    @classmethod
    def _schema_required(cls, value: dict | None, info: Any) -> dict | None:
        if value is None and info.data.get("format") not in SCHEMA_FORMATS:
            raise PydanticCustomError("missing", "Field required")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in KNOWN_FORMATS:
            raise ValueError(f"unknown format {value!r}; known: {', '.join(KNOWN_FORMATS)}")
        return value

    @field_validator("start")
    @classmethod
    def _valid_start(cls, value: str) -> str:
        if value in ("earliest", "latest") or lookback(value) is not None:
            return value
        raise ValueError(
            f"start must be earliest, latest or a lookback like -15m / -2h / -1d, not {value!r}"
        )

    @model_validator(mode="after")
    def _consistent(self) -> TableConfig:
        if (self.topic is None) == (self.topics is None):
            raise ValueError("give exactly one of topic or topics")
        if self.topics is not None and not self.topics:
            raise ValueError("topics must list at least one topic")
        if self.index is not None and self.limit is not None:
            raise ValueError("index and limit cannot be combined (Perspective does not support it)")
        if self.index is not None and self.schema_ is not None and self.index not in self.schema_:
            raise ValueError(f"index {self.index!r} is not a column of the schema")
        problems = table_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def topic_list(self) -> list[str]:
        return [self.topic] if self.topic is not None else list(self.topics or [])


class ViewerConfig(BaseModel):
    """A perspective-viewer configuration; validated in depth by the dashboards."""

    model_config = ConfigDict(extra="allow", frozen=True)
    plugin: str = "Datagrid"


class PanelConfig(Strict):
    table: str
    title: str | None = None
    viewer: ViewerConfig = Field(default_factory=ViewerConfig)


class DashboardConfig(Strict):
    title: str | None = None
    panels: list[PanelConfig] = Field(min_length=1)


class LivetablesConfig(BaseSettings):
    """The whole file. Environment variables override what the file says."""

    model_config = SettingsConfigDict(
        env_prefix="LIVETABLES_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    tables: dict[str, TableConfig] = Field(min_length=1)
    dashboards: dict[str, DashboardConfig] = Field(default_factory=dict)
    auth: AuthConfig = Field(default_factory=AuthConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: it overrides the file (passed as init kwargs).
        return env_settings, init_settings

    @field_validator("tables")
    @classmethod
    def _table_names(cls, value: dict[str, TableConfig]) -> dict[str, TableConfig]:
        for name in value:
            if not TABLE_NAME.match(name):
                raise ValueError(
                    f"table name {name!r} must start with a letter or _ and use only "
                    "letters, digits, _ . -"
                )
        return value

    @model_validator(mode="after")
    def _access_rules_name_tables(self) -> LivetablesConfig:
        unknown = sorted(set(self.auth.table_access) - set(self.tables))
        if unknown:
            raise ValueError(
                "\n".join(f"auth.table_access.{name}: unknown table {name!r}" for name in unknown)
            )
        return self

    @model_validator(mode="after")
    def _panels_fit_their_tables(self) -> LivetablesConfig:
        errors = [
            f"tables.{name}.format: {table.format} without a schema in format_options "
            "is read through a schema registry: set kafka.schema_registry"
            for name, table in self.tables.items()
            if self.kafka.schema_registry is None
            and (
                table.format_options.uses_registry(table.format)
                or (
                    table.key is not None
                    and table.key.format_options.uses_registry(table.key.format)
                )
            )
        ]
        for dash_name, dash in self.dashboards.items():
            for i, panel in enumerate(dash.panels):
                path = f"dashboards.{dash_name}.panels.{i}"
                table = self.tables.get(panel.table)
                if table is None:
                    errors.append(
                        f"{path}.table: unknown table {panel.table!r}; "
                        f"tables are: {', '.join(sorted(self.tables))}"
                    )
                    continue
                if table.schema_ is None:
                    continue  # derived at start-up, checked then
                viewer = panel.viewer.model_dump(exclude_unset=False)
                errors.extend(viewer_errors(viewer, table.schema_, f"{path}.viewer"))
        if errors:
            raise ValueError("\n".join(errors))
        return self


def _key_path(loc: tuple[Any, ...]) -> str:
    parts = ("schema" if p == "schema_" else str(p) for p in loc)
    return ".".join(parts) or "(top level)"


def format_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, ``key.path: reason``, in the user's own key names."""
    lines = []
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        if err["type"] == "missing":
            msg = "required key is missing"
        if not loc and ": " in msg:
            # Whole-file checks already name their key paths, one per line.
            lines.extend(msg.splitlines())
            continue
        lines.append(f"{_key_path(loc)}: {msg}")
    return lines


def parse_config(data: Any, source: str = "<config>") -> LivetablesConfig:
    """Validate an already-parsed YAML document (plus the environment)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): expected a mapping, got {type(data).__name__}"])
    try:
        return LivetablesConfig(**data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_config(path: str | os.PathLike[str]) -> LivetablesConfig:
    """Read, parse and validate a config file; raise ConfigError naming the file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}not valid YAML: {problem}"]) from None
    return parse_config(data, source)


def summary(config: LivetablesConfig) -> str:
    """A human summary for ``livetables check``."""
    lines = [f"kafka: {config.kafka.bootstrap_servers}"]
    if config.kafka.schema_registry is not None:
        lines.append(f"schema registry: {config.kafka.schema_registry.url}")
    lines.append(f"server: {config.server.host}:{config.server.port}")
    lines.append(f"tables: {len(config.tables)}")
    for name, table in config.tables.items():
        kind = (
            f"indexed on {table.index}"
            if table.index
            else f"rolling window of {table.limit} rows"
            if table.limit
            else "append"
        )
        cols = (
            ", ".join(f"{c}: {t}" for c, t in table.schema_.items())
            if table.schema_ is not None
            else "derived from the record schema at start-up"
        )
        lines.append(
            f"  {name}: {table.format} from {', '.join(table.topic_list)}, {kind}, "
            f"start {table.start}; columns {cols}"
        )
    if config.dashboards:
        lines.append(f"dashboards: {len(config.dashboards)}")
        for name, dash in config.dashboards.items():
            lines.append(f"  {name}: {dash.title or name}, {len(dash.panels)} panel(s)")
    return "\n".join(lines)
