"""Table columns derived from record schemas, for tables that leave out ``schema:``.

An Avro or Protobuf table without ``schema:`` takes its columns from the record
schema: the schema in ``format_options`` (plain records), or the latest version
of the registry subject (``format_options.subject``, by default
``<topic>-value``) at start-up. Nested records become flattened columns
(``price.last`` -> ``price_last``), ``fields:`` adds columns by path, and the
key, header and metadata columns are added with their default types. A field
no Perspective column can hold stops the start with an error naming the table
and the field.
"""

from __future__ import annotations

import json
from typing import Any

from connectors.decoders import avro, protobuf
from connectors.registry import RegistryUnavailable, UnknownSchema, registry_for
from service.config import ConfigError, LivetablesConfig, TableConfig
from service.dashboards import viewer_errors
from service.formatconfig import extra_columns


class Unreachable(Exception):
    """The registry needed to derive a table's columns did not answer."""


def resolve_schemas(
    config: LivetablesConfig, source: str = "<config>", reachable_only: bool = False
) -> tuple[LivetablesConfig, list[str]]:
    """The config with every table's columns known, and notes about what was not derived.

    Raises ConfigError for a schema that cannot become columns. With
    ``reachable_only`` (``livetables check``), a table whose registry cannot be
    reached keeps ``schema`` unset and gets a note; otherwise that is an error.
    """
    tables: dict[str, TableConfig] = {}
    errors: list[str] = []
    notes: list[str] = []
    for name, table in config.tables.items():
        if table.schema_ is not None:
            tables[name] = table
            continue
        try:
            tables[name] = derive_table(table, config)
        except Unreachable as exc:
            if not reachable_only:
                errors.append(f"tables.{name}.schema: cannot derive the columns: {exc}")
            notes.append(f"tables.{name}: columns not derived now ({exc})")
            tables[name] = table
        except (avro.AvroSchemaError, protobuf.ProtobufSchemaError, ValueError) as exc:
            errors.append(f"tables.{name}.schema: cannot derive the columns: {exc}")
    if not errors:
        for dash_name, dash in config.dashboards.items():
            for i, panel in enumerate(dash.panels):
                table = tables.get(panel.table)
                if table is None or table.schema_ is None or config.tables[panel.table].schema_:
                    continue
                viewer = panel.viewer.model_dump(exclude_unset=False)
                path = f"dashboards.{dash_name}.panels.{i}.viewer"
                errors.extend(viewer_errors(viewer, table.schema_, path))
    if errors:
        raise ConfigError(source, errors)
    if all(tables[n] is config.tables[n] for n in tables):
        return config, notes
    return config.model_copy(update={"tables": tables}), notes


def derive_table(table: TableConfig, config: LivetablesConfig) -> TableConfig:
    if table.format == "avro":
        schema = _avro_schema(table, config)
        columns, nested = avro.derive_columns(schema)

        def typed(path: tuple[str, ...]) -> str | None:
            return avro.path_type(schema, path)
    elif table.format == "protobuf":
        descriptor = _protobuf_message(table, config)
        columns, nested = protobuf.derive_columns(descriptor)

        def typed(path: tuple[str, ...]) -> str | None:
            return protobuf.path_type(descriptor, path)
    else:
        raise ValueError(f"format {table.format} carries no schema: give schema:")
    for column, path in table.fields.items():
        kind = typed(tuple(path.split(".")))
        if kind is None:
            raise ValueError(
                f"fields.{column}: {path!r} is not a field of the record schema that a "
                "Perspective column can hold"
            )
        columns[column] = kind
    for column, kind in extra_columns(table).items():
        columns.setdefault(column, kind)
    if table.index is not None and table.index not in columns:
        raise ValueError(f"index {table.index!r} is not a column of the derived schema")
    fields = {**{c: p for c, p in nested.items() if c not in table.fields}, **table.fields}
    return table.model_copy(update={"schema_": columns, "fields": fields})


def _registry_schema(table: TableConfig, config: LivetablesConfig):
    subject = table.format_options.subject or f"{table.topic_list[0]}-value"
    assert config.kafka.schema_registry is not None  # the config checks this
    try:
        return registry_for(config.kafka.schema_registry).latest(subject)
    except RegistryUnavailable as exc:
        raise Unreachable(str(exc)) from None
    except UnknownSchema:
        raise ValueError(
            f"the registry has no subject {subject!r} yet; register the schema first, "
            "or give schema: (or format_options.subject)"
        ) from None


def _avro_schema(table: TableConfig, config: LivetablesConfig) -> Any:
    if not table.format_options.uses_registry("avro"):
        return avro.load_schema(table.format_options)
    registered = _registry_schema(table, config)
    if registered.schema_type != "AVRO":
        raise ValueError(f"the registry's schema is {registered.schema_type}, not AVRO")
    main = json.loads(registered.text)
    if registered.references:
        return avro.inline_references([*map(json.loads, registered.references.values()), main])
    return main


def _protobuf_message(table: TableConfig, config: LivetablesConfig):
    options = table.format_options
    if not options.uses_registry("protobuf"):
        pool = protobuf.load_descriptor_set(options.descriptor_file)
        file_name = None
    else:
        registered = _registry_schema(table, config)
        if registered.schema_type != "PROTOBUF":
            raise ValueError(f"the registry's schema is {registered.schema_type}, not PROTOBUF")
        pool, file_name = protobuf.pool_from_registry(registered.text, registered.references)
    if options.message:
        try:
            return pool.FindMessageTypeByName(options.message)
        except KeyError:
            raise ValueError(f"message {options.message!r} is not in the schema") from None
    assert file_name is not None
    return protobuf.message_by_index(pool, file_name, ())
