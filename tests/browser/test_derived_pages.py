"""Derived tables and retention in real Chromium, in replicated and server mode."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.helpers import json_bytes, produce, wait_until

POSITIONS = {"id": "string", "book": "string", "side": "string", "qty": "integer"}
LIVE = "() => document.documentElement.dataset.state === 'live'"
# What the viewer shows, read through its own view (the worker's table or the server's).
VIEW_ROWS = """async () => {
  const viewer = document.querySelector('perspective-viewer');
  const view = await viewer.getView();
  const columns = await view.to_columns();
  return {columns, names: Object.keys(columns)};
}"""


def _grid(page: Page):
    return page.locator("perspective-viewer-datagrid regular-table")


def _position(key: str, book: str, side: str, qty: int):
    value = json_bytes({"id": key, "book": book, "side": side, "qty": qty})
    return (0, key.encode(), value)


def _shown(page: Page) -> dict:
    shown = page.evaluate(VIEW_ROWS)
    columns = shown["columns"]
    return {
        (columns["book"][i], columns["side"][i]): columns["qty"][i]
        for i in range(len(columns["book"]))
    }


@pytest.mark.parametrize("mode", ["replicated", "server"])
def test_a_derived_table_page_follows_its_source(kafka, topic_name, run_service, new_page, mode):
    kafka.create_topic(topic_name, partitions=1)
    produce(
        kafka.bootstrap,
        topic_name,
        [
            _position("p1", "alpha", "buy", 10),
            _position("p2", "alpha", "buy", 5),
            _position("p3", "bravo", "sell", 7),
        ],
    )
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "positions": {"topic": topic_name, "schema": POSITIONS, "index": "id"},
                "books": {
                    "from": "positions",
                    "view": {"group_by": ["book", "side"], "columns": ["qty"]},
                },
            },
        }
    )
    wait_until(service.ready, what="ready")
    page = new_page(f"{service.url}/tables/books?mode={mode}")
    page.wait_for_function(LIVE, timeout=30000)
    expect(_grid(page).get_by_text("alpha", exact=True)).to_be_visible(timeout=20000)
    # The synthetic key of a two-column group is not among the columns shown.
    expect(_grid(page).locator("thead")).not_to_contain_text("__key__")
    expect(_grid(page).locator("thead")).to_contain_text("qty")
    wait_until(
        lambda: _shown(page) == {("alpha", "buy"): 15, ("bravo", "sell"): 7},
        what="the groups",
    )
    new_page.screenshot(page, f"{mode}-before")
    # bravo's only position goes, alpha grows, charlie appears.
    produce(
        kafka.bootstrap,
        topic_name,
        [
            (0, b"p3", None),
            _position("p2", "alpha", "buy", 20),
            _position("p4", "charlie", "sell", 1),
        ],
    )
    wait_until(
        lambda: _shown(page) == {("alpha", "buy"): 30, ("charlie", "sell"): 1},
        what="the groups after the change",
    )
    expect(_grid(page).get_by_text("bravo", exact=True)).to_have_count(0, timeout=20000)
    expect(_grid(page).get_by_text("charlie", exact=True)).to_be_visible()
    new_page.screenshot(page, f"{mode}-after")


@pytest.mark.parametrize("mode", ["replicated", "server"])
def test_rows_leave_the_grid_when_they_age_out(kafka, topic_name, run_service, new_page, mode):
    kafka.create_topic(topic_name, partitions=1)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "recent": {"topic": topic_name, "schema": POSITIONS, "retention": "3s"},
            },
        }
    )
    wait_until(service.ready, what="ready")
    page = new_page(f"{service.url}/tables/recent?mode={mode}")
    page.wait_for_function(LIVE, timeout=30000)
    produce(kafka.bootstrap, topic_name, [_position("p1", "delta", "buy", 3)])
    expect(_grid(page).get_by_text("delta", exact=True)).to_be_visible(timeout=20000)
    # The internal row numbers of an append table with retention are not shown.
    expect(_grid(page).locator("thead")).not_to_contain_text("__row__")
    new_page.screenshot(page, f"{mode}-fresh")
    expect(_grid(page).get_by_text("delta", exact=True)).to_have_count(0, timeout=20000)
    assert service.metric("livetables_rows_expired_total", table="recent") == 1
