"""Config validation: good files load, bad ones name every key path, env overrides."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from service.config import ConfigError, load, load_config, lookback, parse_config, resolve_config

MINIMAL = {"tables": {"t": {"topic": "a", "schema": {"x": "string"}}}}


def test_defaults_fill_a_minimal_file():
    config = parse_config(MINIMAL)
    assert config.kafka.bootstrap_servers == "localhost:9092"
    assert config.server.port == 8080
    table = config.tables["t"]
    assert table.format == "json" and str(table.start) == "earliest" and not table.editable
    assert table.topic_list == ["a"]


def test_librdkafka_properties_pass_through_verbatim():
    config = parse_config(
        {
            **MINIMAL,
            "kafka": {"client": {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}},
        }
    )
    assert config.kafka.client == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}


@pytest.mark.parametrize(
    ("table", "path", "reason"),
    [
        ({"schema": {"x": "string"}}, "tables.t", "exactly one of topic or topics"),
        ({"topic": "a", "topics": ["b"], "schema": {"x": "string"}}, "tables.t", "exactly one"),
        ({"topic": "a", "schema": {"x": "text"}}, "tables.t.schema.x", "Input should be"),
        ({"topic": "a", "schema": {}}, "tables.t.schema", "at least 1"),
        ({"topic": "a", "schema": {"x": "string"}, "index": "y"}, "tables.t", "not a column"),
        (
            {"topic": "a", "schema": {"x": "string"}, "index": "x", "limit": 5},
            "tables.t",
            "cannot be combined",
        ),
        ({"topic": "a", "schema": {"x": "string"}, "start": "-5w"}, "tables.t.start", "lookback"),
        (
            {"topic": "a", "schema": {"x": "string"}, "format": "xml"},
            "tables.t.format",
            "unknown format",
        ),
        ({"topic": "a", "schema": {"x": "string"}, "limt": 5}, "tables.t.limt", "unknown key"),
    ],
)
def test_errors_name_their_key_path(table, path, reason):
    with pytest.raises(ConfigError) as caught:
        parse_config({"tables": {"t": table}}, "f.yaml")
    lines = caught.value.errors
    assert any(line.startswith(f"{path}:") and reason in line for line in lines), lines
    assert "f.yaml" in str(caught.value)


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "tables": {
                    "a": {"topic": "a", "schema": {"x": "nope"}},
                    "b": {"topic": "b", "schema": {"y": "string"}, "start": "never"},
                },
                "srever": {},
            }
        )
    assert len(caught.value.errors) == 3


def test_no_tables_is_an_error():
    with pytest.raises(ConfigError) as caught:
        parse_config({})
    assert caught.value.errors == ["tables: required key is missing"]


def test_dashboard_panels_must_name_tables():
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "dashboards": {"d": {"panels": [{"table": "missing"}]}}})
    assert "dashboards.d.panels.0.table: unknown table 'missing'" in str(caught.value)


def test_environment_overrides_nested_keys(monkeypatch):
    monkeypatch.setenv("LIVETABLES_KAFKA__BOOTSTRAP_SERVERS", "b1:9092,b2:9092")
    monkeypatch.setenv("LIVETABLES_SERVER__PORT", "9999")
    monkeypatch.setenv("LIVETABLES_TABLES__T__LIMIT", "10")
    config = parse_config(MINIMAL)
    assert config.kafka.bootstrap_servers == "b1:9092,b2:9092"
    assert config.server.port == 9999
    assert config.tables["t"].limit == 10
    assert config.tables["t"].topic == "a"


def test_a_bad_environment_value_is_reported_like_a_bad_file(monkeypatch):
    monkeypatch.setenv("LIVETABLES_SERVER__PORT", "eighty")
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL)
    assert any(line.startswith("server.port:") for line in caught.value.errors)


def test_yaml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tables:\n  t: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "line" in caught.value.errors[0]


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("-15m", timedelta(minutes=15)),
        ("-2h", timedelta(hours=2)),
        ("-1.5d", timedelta(hours=36)),
        ("-500ms", timedelta(milliseconds=500)),
        ("earliest", None),
    ],
)
def test_lookback_windows(text, window):
    assert lookback(text) == window


def test_start_is_parsed_once_into_the_policy_the_source_takes():
    config = parse_config({"tables": {"t": {**MINIMAL["tables"]["t"], "start": "-2h"}}})
    start = config.tables["t"].start
    assert (start.kind, start.window, str(start)) == ("lookback", timedelta(hours=2), "-2h")


def test_format_names_and_their_options_come_from_the_decoders(monkeypatch):
    from connectors.base import Decoder
    from connectors.decoders import DECODERS

    class Fixed(Decoder):
        name = "fixed"
        options = frozenset({"columns"})

        def decode_values(self, values, locate):  # pragma: no cover - never decoded here
            raise NotImplementedError

    monkeypatch.setitem(DECODERS, "fixed", Fixed)
    table = {"topic": "a", "schema": {"x": "string"}, "format": "fixed"}
    config = parse_config({"tables": {"t": {**table, "format_options": {"columns": ["x"]}}}})
    assert config.tables["t"].format == "fixed"
    with pytest.raises(ConfigError) as caught:
        parse_config({"tables": {"t": {**table, "format_options": {"header": True}}}})
    assert "format_options.header applies to csv only, not fixed" in str(caught.value)


def test_a_tokens_file_is_read_at_resolution_and_its_errors_name_the_key(tmp_path):
    missing = tmp_path / "tokens.yaml"
    auth = {"enabled": True, "tokens_file": str(missing)}
    config = parse_config({**MINIMAL, "auth": auth})  # validation reads no file
    with pytest.raises(ConfigError) as caught:
        resolve_config(config)
    assert caught.value.errors[0].startswith(f"auth.tokens_file: cannot read {missing}")
    missing.write_text("batch: batch-token-0123456789abcdef\n")
    resolved, notes = resolve_config(config)
    assert resolved.resolved and notes == []
    missing.unlink()  # read once: the resolved configuration needs the file no more
    assert resolved.auth.static_tokens() == {"batch": "batch-token-0123456789abcdef"}
    assert resolve_config(resolved) == (resolved, [])


def test_load_returns_a_resolved_configuration_whose_columns_are_known(tmp_path):
    schema = {"type": "record", "name": "R", "fields": [{"name": "px", "type": "double"}]}
    path = tmp_path / "c.yaml"
    table = {"topic": "a", "format": "avro", "format_options": {"schema": schema}}
    path.write_text(yaml.safe_dump({"tables": {"t": table}}))
    assert load_config(path).tables["t"].schema_ is None
    config = load(path)
    assert config.resolved and config.tables["t"].schema_ == {"px": "float"}


def test_the_columns_of_a_table_are_read_only_once_known(tmp_path):
    schema = {"type": "record", "name": "R", "fields": [{"name": "px", "type": "double"}]}
    path = tmp_path / "c.yaml"
    table = {"topic": "a", "format": "avro", "format_options": {"schema": schema}}
    path.write_text(yaml.safe_dump({"tables": {"t": table}}))
    with pytest.raises(ValueError, match="resolve the configuration first"):
        _ = load_config(path).tables["t"].columns
    assert load(path).tables["t"].columns == {"px": "float"}


def test_the_registry_password_is_a_secret():
    registry = {"url": "https://r", "basic_auth": {"user": "svc", "password": "s3cr3t-pass"}}
    config = parse_config({**MINIMAL, "kafka": {"schema_registry": registry}})
    assert "s3cr3t-pass" not in repr(config)
    settings = config.kafka.schema_registry.settings()
    assert settings.password == "s3cr3t-pass" and "s3cr3t-pass" not in repr(settings)
