"""A smoke run of every benchmark scenario on tiny inputs, so the suite cannot rot.

It asserts only that each scenario ran and reported its figures: timings on
shared machines are noise, and the real figures come from ``make bench``.
"""

from __future__ import annotations

from bench.__main__ import main


def test_every_scenario_runs_and_reports(kafka, tmp_path):
    out = tmp_path / "RESULTS.md"
    assert main(["--smoke", "--bootstrap", kafka.bootstrap, "--out", str(out)]) == 0
    report = out.read_text()
    for scenario in (
        "1 append: livetables",
        "(a) naive",
        "(b) batched",
        "(c) csp",
        "2 indexed: livetables",
        "2 limit: livetables",
        "3 replay",
        "5 memory",
        "4 latency",
        "own server view each",
        "6 decode: avro",
        "6 decode: protobuf",
        "7 restart: full replay",
        "7 restart: from the snapshot",
        "a snapshot of the table every",
        "8 derived cost: derived table",
        "9 derived viewers",
        "10 retention",
    ):
        assert scenario in report, scenario
