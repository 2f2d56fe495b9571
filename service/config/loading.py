"""Reading a configuration: YAML text in, a validated (and on request resolved) model out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from service.config.base import ConfigError, format_validation_error
from service.config.durations import format_duration
from service.config.model import LivetablesConfig
from service.config.resolve import resolve_config
from service.config.tables import TableConfig


def parse_config(data: Any, source: str = "<config>") -> LivetablesConfig:
    """Validate an already-parsed YAML document (plus the environment)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): expected a mapping, got {type(data).__name__}"])
    try:
        config = LivetablesConfig(**data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None
    config._source = source
    return config


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


def load(path: str | os.PathLike[str]) -> LivetablesConfig:
    """The configuration the service runs on: read, validated and resolved, once."""
    config, _ = resolve_config(load_config(path))
    return config


def _derived_summary(name: str, table: TableConfig) -> str:
    assert table.view is not None
    cols = (
        ", ".join(f"{c}: {t}" for c, t in table.schema_.items())
        if table.schema_ is not None
        else ", ".join(table.view.output_names())
    )
    return (
        f"  {name}: derived from {table.from_}, one row per {', '.join(table.view.group_by)}, "
        f"refreshed within {format_duration(table.refresh)}; columns {cols}"
    )


def summary(config: LivetablesConfig) -> str:
    """A human summary for ``livetables check``."""
    lines = [f"kafka: {config.kafka.bootstrap_servers}"]
    if config.kafka.schema_registry is not None:
        lines.append(f"schema registry: {config.kafka.schema_registry.url}")
    lines.append(f"server: {config.server.host}:{config.server.port}")
    if config.snapshots is not None:
        lines.append(
            f"snapshots: {config.snapshots.dir}, every {config.snapshots.interval_seconds:g} s"
        )
    lines.append(f"tables: {len(config.tables)}")
    for name, table in config.tables.items():
        if table.derived:
            lines.append(_derived_summary(name, table))
            continue
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
        retention = (
            f", rows kept {format_duration(table.retention)}"
            f" by {table.retention_column or 'record timestamp'}"
            if table.retention is not None
            else ""
        )
        lines.append(
            f"  {name}: {table.format} from {', '.join(table.topic_list)}, {kind}{retention}, "
            f"start {table.start}; columns {cols}"
        )
    if config.dashboards:
        lines.append(f"dashboards: {len(config.dashboards)}")
        for name, dash in config.dashboards.items():
            lines.append(f"  {name}: {dash.title or name}, {len(dash.panels)} panel(s)")
    return "\n".join(lines)
