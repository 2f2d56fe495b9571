"""Pages in real Chromium against a real Kafka broker: tables, dashboards, reconnects."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from service.localkafka.broker import free_port
from tests.helpers import json_bytes, produce

SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}
# Functions, not expressions: Playwright evaluates an expression string with eval(), which
# the pages' Content-Security-Policy forbids.
LIVE = "() => document.documentElement.dataset.state === 'live'"


def _grid(page: Page):
    return page.locator("perspective-viewer-datagrid regular-table")


def _config(kafka, topic: str, **table) -> dict:
    return {
        "kafka": {"bootstrap_servers": kafka.bootstrap},
        "tables": {"t": {"topic": topic, "schema": SCHEMA, **table}},
    }


@pytest.mark.parametrize("mode", ["replicated", "server"])
def test_a_table_page_shows_rows_produced_after_it_opened(
    kafka, topic_name, run_service, new_page, mode
):
    kafka.create_topic(topic_name, partitions=2)
    service = run_service(_config(kafka, topic_name))
    page = new_page(f"{service.url}/tables/t?mode={mode}")
    page.wait_for_function(LIVE, timeout=30000)
    expect(page.locator(".mode")).to_have_text(f"{mode} mode")
    produce(
        kafka.bootstrap,
        topic_name,
        (
            (i % 2, None, json_bytes({"id": f"rec-{i}", "sym": "ACME", "px": 1.5, "qty": i}))
            for i in range(20)
        ),
    )
    expect(_grid(page).get_by_text("rec-19", exact=True)).to_be_visible(timeout=20000)
    expect(_grid(page).get_by_text("ACME").first).to_be_visible()
    new_page.screenshot(page, mode)


@pytest.mark.parametrize("mode", ["replicated", "server"])
def test_a_tombstone_removes_the_row_from_the_grid(kafka, topic_name, run_service, new_page, mode):
    kafka.create_topic(topic_name, partitions=1)
    rows = [
        (0, k.encode(), json_bytes({"id": k, "sym": k.upper(), "px": 1.0, "qty": 1}))
        for k in ("alpha", "bravo", "charlie")
    ]
    produce(kafka.bootstrap, topic_name, rows)
    service = run_service(_config(kafka, topic_name, index="id"))
    page = new_page(f"{service.url}/tables/t?mode={mode}")
    page.wait_for_function(LIVE, timeout=30000)
    expect(_grid(page).get_by_text("BRAVO", exact=True)).to_be_visible(timeout=20000)
    new_page.screenshot(page, "before")
    produce(kafka.bootstrap, topic_name, [(0, b"bravo", None)])
    expect(_grid(page).get_by_text("BRAVO", exact=True)).to_have_count(0, timeout=20000)
    expect(_grid(page).get_by_text("CHARLIE", exact=True)).to_be_visible()
    new_page.screenshot(page, "after")


def test_a_dashboard_renders_a_grid_and_a_chart(kafka, topic_name, run_service, new_page):
    kafka.create_topic(topic_name, partitions=2)
    produce(
        kafka.bootstrap,
        topic_name,
        (
            (
                i % 2,
                None,
                json_bytes({"id": str(i), "sym": "ABCDEFGH"[i % 8], "px": i / 3, "qty": i}),
            )
            for i in range(400)
        ),
    )
    config = _config(kafka, topic_name)
    config["dashboards"] = {
        "desk": {
            "title": "Desk",
            "panels": [
                {"table": "t", "title": "All trades", "viewer": {"plugin": "Datagrid"}},
                {
                    "table": "t",
                    "title": "Quantity by symbol",
                    "viewer": {"plugin": "Y Bar", "group_by": ["sym"], "columns": ["qty"]},
                },
            ],
        }
    }
    service = run_service(config)
    page = new_page(f"{service.url}/dashboards/desk")
    page.wait_for_function(LIVE, timeout=30000)
    expect(page.locator(".panel h2")).to_have_text(["All trades", "Quantity by symbol"])
    expect(_grid(page).first).to_be_visible(timeout=20000)
    chart = page.locator("perspective-viewer-d3fc-ybar")
    expect(chart).to_be_visible(timeout=20000)
    # Eight bars drawn: one SVG path per bar besides the axes.
    expect(chart.locator("svg path.series, svg .series path, svg path").nth(8)).to_be_attached(
        timeout=20000
    )
    box = chart.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100
    new_page.screenshot(page, "dashboard")


def test_the_page_reconnects_after_a_service_restart(kafka, topic_name, run_service, new_page):
    kafka.create_topic(topic_name, partitions=1)
    produce(
        kafka.bootstrap,
        topic_name,
        [(0, None, json_bytes({"id": "first", "sym": "X", "px": 1.0, "qty": 1}))],
    )
    port = free_port()
    config = _config(kafka, topic_name)
    service = run_service(config, port=port)
    page = new_page(f"{service.url}/tables/t")
    page.wait_for_function(LIVE, timeout=30000)
    expect(_grid(page).get_by_text("first", exact=True)).to_be_visible(timeout=20000)
    service.stop()
    page.wait_for_function(
        "() => document.documentElement.dataset.state === 'reconnecting'", timeout=30000
    )
    expect(page.locator("#status")).to_have_text("reconnecting")
    new_page.screenshot(page, "reconnecting")
    produce(
        kafka.bootstrap,
        topic_name,
        [(0, None, json_bytes({"id": "second", "sym": "X", "px": 2.0, "qty": 2}))],
    )
    run_service(config, port=port)
    page.wait_for_function(LIVE, timeout=30000)
    expect(_grid(page).get_by_text("second", exact=True)).to_be_visible(timeout=20000)
    expect(_grid(page).get_by_text("first", exact=True)).to_be_visible()
    new_page.screenshot(page, "reconnected")


def test_the_index_lists_tables_and_dashboards(kafka, topic_name, run_service, new_page):
    kafka.create_topic(topic_name, partitions=1)
    config = _config(kafka, topic_name)
    config["dashboards"] = {"d": {"title": "My desk", "panels": [{"table": "t"}]}}
    service = run_service(config)
    page = new_page(f"{service.url}/")
    expect(page.locator("tr[data-table='t'] .pill")).to_have_text("live", timeout=20000)
    expect(page.get_by_role("link", name="My desk")).to_be_visible()
    new_page.screenshot(page, "index")


def test_a_server_mode_dashboard_under_a_live_stream_stays_within_the_limits(
    kafka, topic_name, run_service, new_page
):
    """Grid, pivot and chart query the server at the pace of updates: nothing is refused."""
    kafka.create_topic(topic_name, partitions=2)

    def records(start: int, stop: int):
        for i in range(start, stop):
            key = f"k{i % 20_000}"
            record = {"id": key, "sym": "ABCDEFGH"[i % 8], "px": i / 3, "qty": i}
            yield (i % 2, key.encode(), json_bytes(record))

    produce(kafka.bootstrap, topic_name, records(0, 20_000))
    config = _config(kafka, topic_name, index="id")
    config["dashboards"] = {
        "desk": {
            "panels": [
                {"table": "t", "viewer": {"plugin": "Datagrid", "sort": [["qty", "desc"]]}},
                {
                    "table": "t",
                    "viewer": {"plugin": "Datagrid", "group_by": ["sym"], "split_by": ["sym"]},
                },
                {
                    "table": "t",
                    "viewer": {"plugin": "Y Bar", "group_by": ["sym"], "columns": ["qty"]},
                },
            ],
        }
    }
    service = run_service(config)
    page = new_page(f"{service.url}/dashboards/desk?mode=server")
    page.wait_for_function(LIVE, timeout=30000)
    expect(_grid(page).first).to_be_visible(timeout=20000)
    chart = page.locator("perspective-viewer-d3fc-ybar")
    expect(chart.locator("svg path").nth(8)).to_be_attached(timeout=20000)
    # A stream of updates: every viewer re-queries the server after each one.
    sample = service.service.metrics.registry.get_sample_value
    requests_before, started = sample("livetables_websocket_requests_total"), time.monotonic()
    for start in range(20_000, 60_000, 4000):
        produce(kafka.bootstrap, topic_name, records(start, start + 4000))
    expect(_grid(page).first.get_by_text("59,999", exact=True)).to_be_visible(timeout=30000)
    requests = sample("livetables_websocket_requests_total") - requests_before
    print(f"server-mode dashboard: {requests / (time.monotonic() - started):.0f} requests/s")
    refusals = {
        sample.labels["reason"]: sample.value
        for family in service.service.metrics.registry.collect()
        if family.name == "livetables_websocket_rejected_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.value
    }
    assert refusals == {}, refusals
    assert sample("livetables_websocket_sessions") == 1
    new_page.screenshot(page, "server-dashboard")
