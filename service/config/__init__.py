"""The livetables configuration: one YAML file, validated by typed models, resolved once.

``load(path)`` is what the service runs on: the file read, validated (every
problem reported with its key path) and resolved (every table's columns known,
every file it names read). The pieces are importable on their own:
:func:`load_config` and :func:`parse_config` validate, :func:`resolve_config`
resolves, :func:`decode_spec` turns a table into what its decoder takes.
"""

from connectors.source import StartPolicy, lookback
from service.config.auth import AuthConfig, OidcConfig, TableAccessConfig
from service.config.base import ConfigError, Strict, format_validation_error
from service.config.dashboards import DashboardConfig, PanelConfig, ViewerConfig, viewer_errors
from service.config.formats import FormatOptionsConfig, KeyConfig, MetadataConfig
from service.config.kafka import KafkaConfig, RegistryAuth, RegistryTls, SchemaRegistryConfig
from service.config.loading import load, load_config, parse_config, summary
from service.config.model import LivetablesConfig
from service.config.resolve import resolve_config
from service.config.server import ServerConfig
from service.config.snapshots import SnapshotsConfig
from service.config.specs import decode_spec
from service.config.tables import ColumnType, TableConfig

__all__ = [
    "AuthConfig",
    "ColumnType",
    "ConfigError",
    "DashboardConfig",
    "FormatOptionsConfig",
    "KafkaConfig",
    "KeyConfig",
    "LivetablesConfig",
    "MetadataConfig",
    "OidcConfig",
    "PanelConfig",
    "RegistryAuth",
    "RegistryTls",
    "SchemaRegistryConfig",
    "ServerConfig",
    "SnapshotsConfig",
    "StartPolicy",
    "Strict",
    "TableAccessConfig",
    "TableConfig",
    "ViewerConfig",
    "decode_spec",
    "format_validation_error",
    "load",
    "load_config",
    "lookback",
    "parse_config",
    "resolve_config",
    "summary",
    "viewer_errors",
]
