"""Without the browser files, pages say what to do; the rest of the service keeps working."""

from __future__ import annotations

import pytest

from service.web import assets


@pytest.fixture
def no_browser_files(monkeypatch, tmp_path):
    """Point every place the service looks for the browser files at an empty directory."""
    monkeypatch.delenv(assets.ASSETS_ENV, raising=False)
    monkeypatch.setattr(assets, "VENDOR_DIR", tmp_path / "vendor")
    monkeypatch.setattr(assets, "SOURCE_TREE_DIR", tmp_path / "node_modules")


@pytest.mark.parametrize("path", ["/tables/t", "/dashboards/d?mode=server"])
def test_a_page_without_browser_files_explains_how_to_get_them(
    kafka, topic_name, run_service, no_browser_files, path
):
    kafka.create_topic(topic_name, partitions=1)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {"t": {"topic": topic_name, "schema": {"id": "string"}}},
            "dashboards": {"d": {"panels": [{"table": "t"}]}},
        }
    )
    status, body = service.get(path)
    assert status == 503
    assert "<title>Browser files missing" in body
    assert "run `npm ci`" in body
    assert assets.ASSETS_ENV in body
    # The data side does not depend on the browser files.
    status, tables = service.get("/api/tables")
    assert status == 200 and tables[0]["name"] == "t"
    assert service.get("/static/perspective/viewer/dist/cdn/perspective-viewer.js")[0] == 404
