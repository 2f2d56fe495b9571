"""From the configuration to what the connectors take: plain frozen specs.

The connectors know nothing of the configuration file; the service hands each
table's decoder a :class:`~connectors.spec.TableDecodeSpec` built here from a
resolved table.
"""

from __future__ import annotations

from connectors.spec import DecoderSpec, TableDecodeSpec
from service.config.kafka import SchemaRegistryConfig
from service.config.tables import TableConfig


def decode_spec(
    table: TableConfig, registry: SchemaRegistryConfig | None = None
) -> TableDecodeSpec:
    """What the batch decoder of ``table`` needs; the table's columns must be known."""
    if table.schema_ is None:
        raise ValueError("the table's columns are not known yet: resolve the configuration first")
    settings = registry.settings() if registry is not None else None
    extra = table.extra_columns
    value = DecoderSpec(
        format=table.format,
        options=table.format_options.spec(),
        paths={c: _path(table.fields.get(c, c)) for c in table.schema_ if c not in extra},
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
    return TableDecodeSpec(
        columns=dict(table.schema_),
        value=value,
        key_columns=tuple(key.columns) if key is not None else (),
        key=key_spec,
        headers=dict(table.headers),
        metadata=table.metadata.columns() if table.metadata is not None else {},
        index=table.index,
        limit=table.limit,
    )


def _path(dotted: str) -> tuple[str, ...]:
    return tuple(dotted.split("."))
