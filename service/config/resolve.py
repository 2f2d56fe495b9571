"""Resolution: what a valid configuration cannot know by itself, found out once at start-up.

* A table of a format whose records carry a schema (avro, protobuf) may leave
  out ``schema:``; its columns come from the record schema: the one in
  ``format_options`` (plain records), or the latest version of the registry
  subject (``format_options.subject``, by default ``<topic>-value``). Nested
  records become flattened columns (``price.last`` -> ``price_last``),
  ``fields:`` adds columns by path, and the key, header and metadata columns
  are added with their default types. A field no Perspective column can hold
  stops the start with an error naming the table and the field.
* A derived table's columns (``from:`` + ``view:``) are its source's
  ``group_by`` columns then the view's columns, typed by Perspective itself
  (:func:`~service.config.derived.plan_view`), sources first, so a derived
  table of a derived table resolves too.
* ``auth.tokens_file`` is read, its tokens joining ``auth.tokens``.

The result is the configuration every part of the service runs on, marked
:attr:`~service.config.LivetablesConfig.resolved`; resolving it again is a no-op.
"""

from __future__ import annotations

from connectors.decoders import DECODERS
from connectors.registry import RegistryUnavailable, UnknownSchema, registry_for
from connectors.spec import RegistrySettings
from service.config.base import ConfigError
from service.config.derived import ViewRefused, plan_view
from service.config.model import LivetablesConfig
from service.config.tables import TableConfig


class _Unreachable(Exception):
    """The registry needed to derive a table's columns did not answer."""


def resolve_config(
    config: LivetablesConfig, reachable_only: bool = False
) -> tuple[LivetablesConfig, list[str]]:
    """The configuration resolved, and notes about what could not be resolved now.

    Raises ConfigError (naming the key) for a record schema that cannot become
    columns or a tokens file that cannot be read. With ``reachable_only``
    (``livetables check``), a table whose registry cannot be reached keeps
    ``schema`` unset and gets a note, and the result is not marked resolved;
    otherwise that is an error.
    """
    if config.resolved:
        return config, []
    errors: list[str] = []
    notes: list[str] = []
    tables = _derive_tables(config, reachable_only, errors, notes)
    if not errors:
        _plan_derived_tables(tables, errors, notes)
    auth = config.auth
    try:
        auth = auth.with_file_tokens()
    except ValueError as exc:
        errors.append(f"auth.tokens_file: {exc}")
    if not errors:
        errors.extend(_panel_problems(config, tables))
    if errors:
        raise ConfigError(config.source, errors)
    resolved = config.model_copy(update={"tables": tables, "auth": auth})
    resolved._resolved = not notes
    return resolved, notes


def _derive_tables(
    config: LivetablesConfig, reachable_only: bool, errors: list[str], notes: list[str]
) -> dict[str, TableConfig]:
    registry = config.kafka.schema_registry
    settings = registry.settings() if registry is not None else None
    tables: dict[str, TableConfig] = {}
    for name, table in config.tables.items():
        tables[name] = table
        if table.schema_ is not None or table.derived:
            continue
        try:
            tables[name] = derive_table(table, settings)
            errors.extend(f"tables.{name}: {p}" for p in tables[name]._retention_problems())
        except _Unreachable as exc:
            if not reachable_only:
                errors.append(f"tables.{name}.schema: cannot derive the columns: {exc}")
            notes.append(f"tables.{name}: columns not derived now ({exc})")
        except ValueError as exc:
            errors.append(f"tables.{name}.schema: cannot derive the columns: {exc}")
    return tables


def derivation_order(tables: dict[str, TableConfig]) -> list[str]:
    """The derived tables, each after the derived table it reads from (there is no cycle)."""
    order: list[str] = []

    def visit(name: str) -> None:
        table = tables[name]
        if name in order or not table.derived:
            return
        if table.from_ in tables:
            visit(table.from_)
        order.append(name)

    for name in tables:
        visit(name)
    return order


def _plan_derived_tables(
    tables: dict[str, TableConfig], errors: list[str], notes: list[str]
) -> None:
    for name in derivation_order(tables):
        table = tables[name]
        source_name = table.from_
        assert source_name is not None and table.view is not None
        source = tables[source_name]
        if source.schema_ is None:
            notes.append(f"tables.{name}: columns not known now (those of {source_name} are not)")
            continue
        path = f"tables.{name}.view"
        problems = table.view.problems(source_name, source.schema_, path)
        if problems:
            errors.extend(problems)
            continue
        try:
            plan = plan_view(source_name, table.view, source.schema_)
        except ViewRefused as exc:
            errors.append(f"{path}{'.' if exc.where else ''}{exc.where}: {exc}")
            continue
        tables[name] = table.model_copy(update={"schema_": plan.schema})


def _panel_problems(config: LivetablesConfig, tables: dict[str, TableConfig]) -> list[str]:
    """Panels of tables whose columns were derived now (the others were checked already)."""
    errors = []
    for dash_name, dash in config.dashboards.items():
        for i, panel in enumerate(dash.panels):
            derived = tables.get(panel.table)
            if derived is None or derived.schema_ is None or config.tables[panel.table].schema_:
                continue
            errors.extend(
                panel.viewer_errors(derived.schema_, f"dashboards.{dash_name}.panels.{i}")
            )
    return errors


def derive_table(table: TableConfig, registry: RegistrySettings | None) -> TableConfig:
    """The table with the columns of its record schema; ValueError if they cannot be had."""
    decoder = DECODERS[table.format]
    if not decoder.carries_schema:
        raise ValueError(f"format {table.format} carries no schema: give schema:")
    options = table.format_options.spec()
    registered = None
    if decoder.uses_registry(options):
        subject = table.format_options.subject or f"{table.topic_list[0]}-value"
        registered = _latest(registry, subject)
    schema = decoder.record_schema(options, registered)
    columns, nested = schema.columns()
    for column, path in table.fields.items():
        kind = schema.path_type(tuple(path.split(".")))
        if kind is None:
            raise ValueError(
                f"fields.{column}: {path!r} is not a field of the record schema that a "
                "Perspective column can hold"
            )
        columns[column] = kind
    for column, kind in table.extra_columns.items():
        columns.setdefault(column, kind)
    if table.index is not None and table.index not in columns:
        raise ValueError(f"index {table.index!r} is not a column of the derived schema")
    fields = {**{c: p for c, p in nested.items() if c not in table.fields}, **table.fields}
    return table.model_copy(update={"schema_": columns, "fields": fields})


def _latest(registry: RegistrySettings | None, subject: str):
    assert registry is not None  # the configuration's validation sees to it
    try:
        return registry_for(registry).latest(subject)
    except RegistryUnavailable as exc:
        raise _Unreachable(str(exc)) from None
    except UnknownSchema:
        raise ValueError(
            f"the registry has no subject {subject!r} yet; register the schema first, "
            "or give schema: (or format_options.subject)"
        ) from None
