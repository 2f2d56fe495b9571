"""The whole file: ``kafka``, ``server``, ``tables``, ``dashboards``, ``auth``, ``snapshots``.

Every scalar can be overridden from the environment with the ``LIVETABLES_``
prefix and ``__`` between nested keys (``LIVETABLES_KAFKA__BOOTSTRAP_SERVERS``,
``LIVETABLES_TABLES__TRADES__LIMIT``), which is how a Helm chart injects
secrets without writing them into a ConfigMap.

A validated configuration may still lack what only the outside world can tell
(the columns of a table read through a schema registry, the tokens of a tokens
file); :func:`service.config.resolve_config` fills that in once, and marks the
result :attr:`LivetablesConfig.resolved`.
"""

from __future__ import annotations

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from service.config.auth import AuthConfig
from service.config.dashboards import DashboardConfig
from service.config.kafka import KafkaConfig
from service.config.server import ServerConfig
from service.config.snapshots import SnapshotsConfig
from service.config.tables import TABLE_NAME, TableConfig


def published_columns(table: TableConfig) -> dict[str, str | None] | None:
    """A table's columns with their types where known yet; None if not even names are known.

    A derived table's names follow from its view; their types only from resolution.
    """
    if table.schema_ is not None:
        return dict(table.schema_)
    if table.derived and table.view is not None:
        return dict.fromkeys(table.view.output_names())
    return None


def derivation_cycle(tables: dict[str, TableConfig], start: str) -> list[str]:
    """The cycle of ``from:`` links through ``start`` (names, closed), or [] if there is none."""
    path = [start]
    current = tables[start].from_
    while current is not None and current in tables:
        if current == start:
            return [*path, start]
        if current in path:
            return []  # a cycle further up, reported at its own tables
        path.append(current)
        current = tables[current].from_
    return []


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
    snapshots: SnapshotsConfig | None = None

    # Where the configuration came from (for errors found later), and whether it is resolved.
    _source: str = PrivateAttr(default="<config>")
    _resolved: bool = PrivateAttr(default=False)

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

    @property
    def source(self) -> str:
        """The file (or other source) this configuration was read from."""
        return self._source

    @property
    def resolved(self) -> bool:
        """Every table's columns are known and every file the configuration names is read."""
        return self._resolved

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
    def _sections_fit_together(self) -> LivetablesConfig:
        errors = [*self._registry_problems(), *self._derived_problems(), *self._panel_problems()]
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def _registry_problems(self) -> list[str]:
        if self.kafka.schema_registry is not None:
            return []
        return [
            f"tables.{name}.format: {table.format} without a schema in format_options "
            "is read through a schema registry: set kafka.schema_registry"
            for name, table in self.tables.items()
            if table.uses_registry()
        ]

    def _derived_problems(self) -> list[str]:
        """Derived tables name a table that exists, form no cycle, and use its columns."""
        errors = []
        for name, table in self.tables.items():
            if not table.derived:
                continue
            path = f"tables.{name}"
            source = self.tables.get(table.from_ or "")
            if source is None:
                errors.append(
                    f"{path}.from: unknown table {table.from_!r}; "
                    f"tables are: {', '.join(sorted(self.tables))}"
                )
                continue
            cycle = derivation_cycle(self.tables, name)
            if cycle:
                errors.append(f"{path}.from: derived tables form a cycle: {' -> '.join(cycle)}")
                continue
            columns = published_columns(source)
            if columns is not None and table.view is not None:
                errors.extend(table.view.problems(table.from_ or "", columns, f"{path}.view"))
            elif table.view is not None:  # the source's columns come from a registry: names later
                errors.extend(f"{path}.view.{problem}" for problem in table.view._shape_problems())
        return errors

    def _panel_problems(self) -> list[str]:
        errors = []
        for dash_name, dash in self.dashboards.items():
            for i, panel in enumerate(dash.panels):
                path = f"dashboards.{dash_name}.panels.{i}"
                table = self.tables.get(panel.table)
                if table is None:
                    errors.append(
                        f"{path}.table: unknown table {panel.table!r}; "
                        f"tables are: {', '.join(sorted(self.tables))}"
                    )
                elif table.schema_ is not None:  # else: derived at resolution, checked then
                    errors.extend(panel.viewer_errors(table.schema_, path))
        return errors
