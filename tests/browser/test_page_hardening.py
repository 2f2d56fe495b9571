"""Pages under the Content-Security-Policy, with hostile text in the config, in Chromium.

The conftest fails a test on any page error, failed request or CSP violation.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.helpers import json_bytes, produce

SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}
LIVE = "() => document.documentElement.dataset.state === 'live'"
# Inside the page's JSON <script> element (panel titles go there), "<!--<script>" makes the
# HTML parser look for a second "</script>" and swallow the page's own: it never loaded.
TITLE = "Desk <!--<script> & co"
PANEL = "Panel <!--<script> </script><script>window.pwned = 1</script>"


def test_a_dashboard_titled_with_script_markup_renders_and_loads(
    kafka, topic_name, run_service, new_page
):
    kafka.create_topic(topic_name, partitions=1)
    produce(
        kafka.bootstrap,
        topic_name,
        [(0, None, json_bytes({"id": "row-1", "sym": "ACME", "px": 1.0, "qty": 1}))],
    )
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {"t": {"topic": topic_name, "schema": SCHEMA}},
            "dashboards": {"d": {"title": TITLE, "panels": [{"table": "t", "title": PANEL}]}},
        }
    )
    page = new_page(f"{service.url}/dashboards/d")
    page.wait_for_function(LIVE, timeout=30000)
    expect(page.locator("header.bar h1")).to_have_text(TITLE)
    expect(page.locator(".panel h2")).to_have_text(PANEL)
    grid = page.locator("perspective-viewer-datagrid regular-table")
    expect(grid.get_by_text("row-1", exact=True)).to_be_visible(timeout=20000)
    assert page.evaluate("() => window.pwned") is None
    new_page.screenshot(page, "hostile-title")
    # The index lists it too, and its refresh script (a file, not inline) runs.
    index = new_page(f"{service.url}/")
    expect(index.get_by_text(TITLE)).to_be_visible()
    expect(index.locator("tr[data-table='t'] .pill")).to_have_text("live", timeout=20000)
