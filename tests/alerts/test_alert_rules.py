"""The alerting rules in alerts/: valid for Prometheus, unit-tested with promtool, on real metrics.

promtool (Debian package prometheus, installed by scripts/install-system-deps.sh --test)
checks the rules file and runs its unit tests, which fire and clear every alert on input
series shaped like a scrape of livetables. The metric names the rules read are checked
against what the service's own registry exposes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "livetables-rules.yaml"
RULE_TESTS = ROOT / "alerts" / "livetables-rules.test.yaml"
README = ROOT / "README.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail(
            "promtool not found: run scripts/install-system-deps.sh --test (Debian package "
            "prometheus)",
            pytrace=False,
        )
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _exposed_series_names() -> set[str]:
    """Every series name the service's registry can expose, children or not."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
    }
    names = set()
    for family in Metrics("0.0.0").registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_then_clearing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [RULES.name]
    evaluations: dict[str, list[tuple[str, bool]]] = {}
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            evaluations.setdefault(check["alertname"], []).append(
                (check["eval_time"], bool(check["exp_alerts"]))
            )
    for alert in _alerts():
        name = alert["alert"]
        seen = [fires for _, fires in sorted(evaluations.get(name, []), key=_minutes)]
        assert True in seen, f"{name}: no test where it fires"
        fired_at = seen.index(True)
        assert False in seen[:fired_at], f"{name}: no test where it is quiet before it fires"
        assert False in seen[fired_at:], f"{name}: no test where it clears"


def _minutes(evaluation: tuple[str, bool]) -> int:
    match = re.fullmatch(r"(\d+)m", evaluation[0])
    assert match, f"eval_time {evaluation[0]!r}: write it in minutes"
    return int(match.group(1))


def test_rules_read_only_metrics_the_service_exposes() -> None:
    exposed = _exposed_series_names()
    assert "livetables_dead_letter_records_total" in exposed
    assert "process_start_time_seconds" in exposed
    for alert in _alerts():
        used = set(re.findall(r"\b((?:livetables|process)_[a-z_]+)\b", alert["expr"]))
        assert used, f"{alert['alert']}: reads no livetables metric"
        assert used <= exposed, f"{alert['alert']}: unknown metrics {used - exposed}"


def test_every_alert_has_labels_annotations_and_a_runbook_line() -> None:
    readme = README.read_text(encoding="utf-8")
    runbook = readme[readme.index("### Alerts") :]
    for alert in _alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert {"summary", "description"} <= set(alert["annotations"]), name
        assert f"`{name}`" in runbook, f"{name}: no runbook line under '### Alerts' in README.md"
