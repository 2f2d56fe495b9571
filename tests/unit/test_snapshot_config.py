"""The ``snapshots:`` section, the configuration fingerprint, and the start kinds' labels."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.config import ConfigError, parse_config
from service.metrics import START_KINDS
from service.snapshots.fingerprint import fingerprint
from service.snapshots.restore import StartKind, offsets_problem

TABLE = {"topic": "a", "schema": {"x": "string", "y": "integer"}, "index": "x"}


def _config(snapshots=None, **table):
    data = {"tables": {"t": {**TABLE, **table}}}
    if snapshots is not None:
        data["snapshots"] = snapshots
    return parse_config(data, "f.yaml")


def test_snapshots_are_off_unless_configured():
    assert _config().snapshots is None


@pytest.mark.parametrize(
    ("interval", "seconds"), [(None, 30), ("45s", 45), ("5m", 300), ("1h", 3600), (90, 90)]
)
def test_interval_takes_durations(interval, seconds):
    section = {"dir": "/var/lib/livetables"}
    if interval is not None:
        section["interval"] = interval
    config = _config(section)
    assert config.snapshots.interval == timedelta(seconds=seconds)
    assert config.snapshots.dir == "/var/lib/livetables"


@pytest.mark.parametrize(
    ("section", "path", "reason"),
    [
        ({"interval": "30s"}, "snapshots.dir", "required"),
        ({"dir": "/d", "interval": "soon"}, "snapshots.interval", "duration like 30s"),
        ({"dir": "/d", "interval": "100ms"}, "snapshots.interval", "at least 1s"),
        ({"dir": "/d", "intervall": "5s"}, "snapshots.intervall", "unknown key"),
        ({"dir": ""}, "snapshots.dir", "at least 1"),
    ],
)
def test_bad_sections_name_their_key(section, path, reason):
    with pytest.raises(ConfigError) as caught:
        _config(section)
    assert any(e.startswith(f"{path}:") and reason in e for e in caught.value.errors), (
        caught.value.errors
    )


def test_the_environment_can_turn_snapshots_on(monkeypatch):
    monkeypatch.setenv("LIVETABLES_SNAPSHOTS__DIR", "/data")
    monkeypatch.setenv("LIVETABLES_SNAPSHOTS__INTERVAL", "2m")
    config = _config()
    assert config.snapshots.dir == "/data" and config.snapshots.interval_seconds == 120


def _fingerprint(**changes) -> str:
    return fingerprint(_config(**changes).tables["t"])


def test_the_fingerprint_follows_what_shapes_the_rows():
    same = _fingerprint()
    assert _fingerprint() == same
    assert _fingerprint(dead_letter_topic="dlq", editable=True) == same
    for changes in (
        {"topic": "b"},
        {"schema": {"x": "string", "y": "float"}},
        {"schema": {"y": "integer", "x": "string"}},  # column order
        {"index": None},
        {"start": "latest"},
        {"max_record_bytes": 1000},
        {"fields": {"y": "a.b"}},
        {"format": "csv"},
    ):
        assert _fingerprint(**changes) != same, changes


def test_start_kinds_are_the_metric_labels():
    assert set(START_KINDS) == {kind.value for kind in StartKind}


def test_saved_offsets_are_checked_against_the_topic():
    ranges = {("a", 0): (0, 100), ("a", 1): (50, 60)}
    assert offsets_problem({("a", 0): 100, ("a", 1): 50}, ranges) is None
    assert offsets_problem({("a", 1): 49}, ranges).kind is StartKind.RETENTION
    assert offsets_problem({("a", 0): 101}, ranges).kind is StartKind.TOPIC_CHANGED
    assert offsets_problem({("a", 2): 0}, ranges).kind is StartKind.TOPIC_CHANGED
