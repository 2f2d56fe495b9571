"""From the configuration to what the connectors take: plain frozen specs.

The connectors know nothing of the configuration file; the service hands each
table's decoder a :class:`~connectors.spec.TableDecodeSpec` built here from a
resolved table.
"""

from __future__ import annotations

from connectors.spec import DecoderSpec, TableDecodeSpec
from service.config.kafka import SchemaRegistryConfig
from service.config.tables import TIMESTAMP_COLUMN, TableConfig


def decode_spec(
    table: TableConfig, registry: SchemaRegistryConfig | None = None
) -> TableDecodeSpec:
    """What the batch decoder of ``table`` needs; the table's columns must be known."""
    if table.derived:
        raise ValueError("a derived table has no decoder: its rows come from its source")
    published = table.columns
    settings = registry.settings() if registry is not None else None
    extra = table.extra_columns
    value = DecoderSpec(
        format=table.format,
        options=table.format_options.spec(),
        paths={c: _path(table.fields.get(c, c)) for c in published if c not in extra},
        registry=settings,
        subject=table.format_options.subject or f"{table.topic_list[0]}-value",
    )
    key = table.key
    key_spec = None
    if key is not None and key.format != "string":
        key_spec = DecoderSpec(
            format=key.format,
            options=key.format_options.spec(),
            paths=(
                {key.column: ()}
                if key.column is not None
                else {c: _path(p) for c, p in (key.fields or {}).items()}
            ),
            registry=settings,
            subject=key.format_options.subject or f"{table.topic_list[0]}-key",
        )
    columns: dict[str, str] = dict(published)
    metadata = table.metadata.columns() if table.metadata is not None else {}
    if table.kafka_timestamps:
        # Rows age out by their record timestamp: the writer reads it, then drops the column.
        columns[TIMESTAMP_COLUMN] = "datetime"
        metadata = {**metadata, TIMESTAMP_COLUMN: "timestamp"}
    return TableDecodeSpec(
        columns=columns,
        value=value,
        key_columns=tuple(key.columns) if key is not None else (),
        key=key_spec,
        headers=dict(table.headers),
        metadata=metadata,
        index=table.index,
        limit=table.limit,
    )


def _path(dotted: str) -> tuple[str, ...]:
    return tuple(dotted.split("."))
