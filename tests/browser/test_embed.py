"""embed.js in real Chromium, from pages of another origin, against a real Kafka broker.

The service runs on ``http://127.0.0.1:<port>``; the embedding app is a page served on
``http://localhost:<another port>`` (tests/browser/other_origin.py) under the
Content-Security-Policy the README asks of such apps. Every page fails its test on any
page error, failed request or CSP violation (tests/browser/conftest.py), except where a
test expects the browser to refuse something, and says so.
"""

from __future__ import annotations

import logging
import random
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from service.demo.embedding import ExamplePage
from service.localkafka.broker import free_port
from tests.browser.other_origin import BlankPage, OtherOrigin
from tests.helpers import json_bytes, produce, wait_until

SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}
TOKEN = "desk-token-0123456789abcdef"
OTHER_TOKEN = "other-token-0123456789abcdef"

# Functions, not expressions: Playwright evaluates an expression string with eval(), which
# the pages' Content-Security-Policy forbids.
MOUNT = """async ([url, table, mode, viewer, token]) => {
  const { mount } = await import(url + "static/livetables/embed.js");
  const slot = document.getElementById("slot");
  window.states = [];
  slot.addEventListener("livetables-state", (event) => window.states.push(event.detail.state));
  window.mounted = await mount(slot, { url, table, mode, viewer, token });
}"""
STATE = "() => document.getElementById('slot').dataset.livetablesState"
REPLICATE = """async ([url, table, token]) => {
  const { replicate } = await import(url + "static/livetables/embed.js");
  try {
    window.replica = await replicate(url, table, { token });
    window.firstTable = window.replica.table;
    return "ok";
  } catch (error) {
    return error.message;
  }
}"""
REPLICA_ROWS = """async () => {
  const view = await window.replica.table.view();
  try {
    return await view.to_columns();
  } finally {
    await view.delete();
  }
}"""


def _grid(page: Page):
    return page.locator("#slot perspective-viewer-datagrid regular-table")


@pytest.fixture
def other_origin() -> Iterator:
    """Start apps on other origins; all are stopped at the end of the test."""
    started: list[OtherOrigin] = []

    def start(routes: list) -> OtherOrigin:
        app = OtherOrigin(routes).start()
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


class Setup:
    """A service on 127.0.0.1 and an app on localhost that it lists as an allowed origin."""

    def __init__(self, kafka, topic: str, run_service, other_origin, **extra) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.app = other_origin([(r"/", BlankPage, {"livetables_url": self.url})])
        table = extra.pop("table", {})
        self.config = {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "server": {
                "host": "127.0.0.1",
                "allowed_origins": [self.app.origin],
                "frame_ancestors": [self.app.origin],
            },
            "tables": {"t": {"topic": topic, "schema": SCHEMA, **table}},
            **extra,
        }
        self.run_service = run_service
        self.service = run_service(self.config, port=self.port)

    def restart(self) -> None:
        self.service = self.run_service(self.config, port=self.port)

    def server_rows(self) -> dict:
        return _by_id(self.service.columns("t"))


def _by_id(columns: dict) -> dict:
    return {
        columns["id"][i]: tuple(columns[c][i] for c in ("sym", "px", "qty"))
        for i in range(len(columns["id"]))
    }


def _row(key: str, qty: int = 1) -> tuple:
    return (0, key.encode(), json_bytes({"id": key, "sym": key.upper(), "px": 1.0, "qty": qty}))


@pytest.mark.parametrize("mode", ["replicated", "server"])
def test_mount_shows_rows_a_live_record_and_a_tombstones_removal(
    kafka, topic_name, run_service, other_origin, new_page, mode
):
    kafka.create_topic(topic_name, partitions=1)
    produce(kafka.bootstrap, topic_name, [_row(k) for k in ("alpha", "bravo", "charlie")])
    setup = Setup(kafka, topic_name, run_service, other_origin, table={"index": "id"})
    page = new_page(setup.app.origin + "/")
    page.evaluate(
        MOUNT, [setup.url, "t", mode, {"plugin": "Datagrid", "sort": [["id", "asc"]]}, None]
    )
    page.wait_for_function(f"() => ({STATE})() === 'live'", timeout=30000)
    expect(_grid(page).get_by_text("BRAVO", exact=True)).to_be_visible(timeout=20000)
    assert page.evaluate("() => window.states")[-1] == "live"
    produce(kafka.bootstrap, topic_name, [_row("delta")])
    expect(_grid(page).get_by_text("DELTA", exact=True)).to_be_visible(timeout=20000)
    produce(kafka.bootstrap, topic_name, [(0, b"bravo", None)])
    expect(_grid(page).get_by_text("BRAVO", exact=True)).to_have_count(0, timeout=20000)
    expect(_grid(page).get_by_text("CHARLIE", exact=True)).to_be_visible()
    new_page.screenshot(page, mode)


@pytest.mark.parametrize("mode", ["replicated", "server"])
def test_mount_survives_a_service_restart_with_the_viewers_state(
    kafka, topic_name, run_service, other_origin, new_page, mode
):
    kafka.create_topic(topic_name, partitions=1)
    produce(kafka.bootstrap, topic_name, [_row("first")])
    setup = Setup(kafka, topic_name, run_service, other_origin, table={"index": "id"})
    page = new_page(setup.app.origin + "/")
    page.evaluate(MOUNT, [setup.url, "t", mode, {"columns": ["id", "sym", "qty"]}, None])
    page.wait_for_function(f"() => ({STATE})() === 'live'", timeout=30000)
    expect(_grid(page).get_by_text("FIRST", exact=True)).to_be_visible(timeout=20000)
    # The user rearranges the viewer; a restart must not undo it.
    page.evaluate(
        "async () => window.mounted.viewer.restore("
        "{columns: ['id', 'qty'], sort: [['id', 'desc']]})"
    )
    expect(_grid(page).get_by_text("FIRST", exact=True)).to_have_count(0, timeout=10000)
    setup.service.stop()
    page.wait_for_function(f"() => ({STATE})() === 'reconnecting'", timeout=30000)
    produce(kafka.bootstrap, topic_name, [_row("second", qty=22)])
    setup.restart()
    page.wait_for_function(f"() => ({STATE})() === 'live'", timeout=30000)
    expect(_grid(page).get_by_text("second", exact=True)).to_be_visible(timeout=20000)
    expect(_grid(page).get_by_text("first", exact=True)).to_be_visible()
    saved = page.evaluate("async () => window.mounted.viewer.save()")
    assert saved["columns"] == ["id", "qty"] and saved["sort"] == [["id", "desc"]], saved
    states = page.evaluate("() => window.states")
    assert states[states.index("reconnecting") :][-1] == "live", states
    new_page.screenshot(page, f"{mode}-restarted")


def test_a_mount_whose_table_changed_shape_across_a_restart_shows_the_new_table(
    kafka, topic_name, run_service, other_origin, new_page
):
    """A restart with another schema: the replica makes a new worker table, the viewer
    moves to it keeping its configuration, and the old table goes once no view needs it."""
    kafka.create_topic(topic_name, partitions=1)
    produce(kafka.bootstrap, topic_name, [_row("first")])
    setup = Setup(kafka, topic_name, run_service, other_origin, table={"index": "id"})
    page = new_page(setup.app.origin + "/")
    page.evaluate(MOUNT, [setup.url, "t", "replicated", {"sort": [["id", "desc"]]}, None])
    expect(_grid(page).get_by_text("FIRST", exact=True)).to_be_visible(timeout=30000)
    setup.service.stop()
    page.wait_for_function(f"() => ({STATE})() === 'reconnecting'", timeout=30000)
    record = {"id": "second", "sym": "SECOND", "px": 2.0, "qty": 2, "venue": "XLON"}
    produce(kafka.bootstrap, topic_name, [(0, b"second", json_bytes(record))])
    setup.config["tables"]["t"]["schema"] = {**SCHEMA, "venue": "string"}
    setup.restart()
    page.wait_for_function(f"() => ({STATE})() === 'live'", timeout=30000)
    # Polled while the viewer moves between tables: a read of the table being dropped can
    # fail ("Couldn't find key"), which only means "not there yet".
    columns = (
        "async () => { try { return Object.keys("
        "await (await window.mounted.viewer.getTable()).schema()); } catch (e) { return []; } }"
    )
    wait_until(lambda: "venue" in page.evaluate(columns), what="the viewer on the new table")
    expect(_grid(page).get_by_text("SECOND", exact=True)).to_be_visible(timeout=20000)
    expect(_grid(page).get_by_text("FIRST", exact=True)).to_be_visible()
    # The configuration it had is kept (its columns too: the new one is not forced in).
    saved = page.evaluate("async () => window.mounted.viewer.save()")
    assert saved["sort"] == [["id", "desc"]], saved
    new_page.screenshot(page, "new-shape")


def _churn(start: int, stop: int, rng: random.Random):
    """Upserts and tombstones over 200 keys, in one partition's order."""
    for seq in range(start, stop):
        key = f"k{rng.randrange(200)}"
        if rng.random() < 0.25:
            yield (0, key.encode(), None)
        else:
            record = {"id": key, "sym": "ABC"[seq % 3], "px": seq / 7, "qty": seq}
            yield (0, key.encode(), json_bytes(record))


def test_replicate_gives_a_table_equal_to_the_servers_through_updates_removes_and_a_restart(
    kafka, topic_name, run_service, other_origin, new_page
):
    kafka.create_topic(topic_name, partitions=1)
    rng = random.Random(16)
    produce(kafka.bootstrap, topic_name, _churn(0, 1000, rng))
    setup = Setup(kafka, topic_name, run_service, other_origin, table={"index": "id"})
    wait_until(setup.service.ready, what="catch-up")
    page = new_page(setup.app.origin + "/")
    assert page.evaluate(REPLICATE, [setup.url, "t", None]) == "ok"
    produce(kafka.bootstrap, topic_name, _churn(1000, 3000, rng))
    wait_until(
        lambda: setup.service.metric("livetables_records_consumed_total", table="t") == 3000,
        what="all records consumed",
    )
    expected = setup.server_rows()
    assert 0 < len(expected) < 200  # tombstones removed some keys
    wait_until(lambda: _by_id(page.evaluate(REPLICA_ROWS)) == expected, what="replica equal")
    # Reconnects by itself, into the same table (views an app made on it keep working).
    setup.service.stop()
    page.wait_for_function("() => window.replica.state === 'reconnecting'", timeout=30000)
    produce(kafka.bootstrap, topic_name, _churn(3000, 4000, rng))
    setup.restart()
    wait_until(setup.service.ready, what="catch-up after the restart")
    expected = setup.server_rows()
    wait_until(lambda: _by_id(page.evaluate(REPLICA_ROWS)) == expected, what="equal again")
    assert page.evaluate("() => window.replica.table === window.firstTable")


def _get(url: str, origin: str | None, method: str = "GET", **headers: str) -> tuple[int, dict]:
    if origin:
        headers["Origin"] = origin
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}


SHARED = [
    "static/livetables/embed.js",
    "static/livetables/replica.js",
    "static/perspective/client/dist/cdn/perspective.js",
    "static/perspective/server/dist/wasm/perspective-server.wasm",
    "static/perspective/viewer/dist/wasm/perspective-viewer.wasm",
    "static/perspective/viewer/dist/css/themes.css",
    "api/tables",
]


def test_an_origin_not_listed_gets_no_cors_headers_and_no_feed(
    kafka, topic_name, run_service, other_origin, browser: Browser
):
    kafka.create_topic(topic_name, partitions=1)
    produce(kafka.bootstrap, topic_name, [_row("alpha")])
    setup = Setup(kafka, topic_name, run_service, other_origin)
    allowed = setup.app.origin
    stranger = other_origin([(r"/", BlankPage, {"livetables_url": setup.url})])
    for path in SHARED:
        status, headers = _get(setup.url + path, allowed)
        assert status == 200, path
        assert headers.get("access-control-allow-origin") == allowed, path
        assert "Origin" in headers.get("vary", ""), path
        status, headers = _get(setup.url + path, stranger.origin)
        assert status == 200 and "access-control-allow-origin" not in headers, path
        assert "Origin" in headers.get("vary", ""), path
    for path in ("tables/t", "metrics", "readyz"):  # not for embedding: no CORS at all
        assert "access-control-allow-origin" not in _get(setup.url + path, allowed)[1], path
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    status, headers = _get(setup.url + "api/tables", allowed, "OPTIONS", **preflight)
    assert status == 204 and headers["access-control-allow-headers"] == "Authorization"
    status, headers = _get(setup.url + "api/tables", stranger.origin, "OPTIONS", **preflight)
    assert "access-control-allow-origin" not in headers

    # In the browser, the stranger's page can load nothing and open no feed. (Its console
    # reports the refusals: expected here, so this page is not the failing kind.)
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(stranger.origin + "/")
    refused_before = setup.service.metric(
        "livetables_websocket_rejected_requests_total", reason="origin"
    )
    outcome = page.evaluate(
        """async (url) => {
          const result = {};
          try { await import(url + "static/livetables/embed.js"); result.module = "loaded"; }
          catch (error) { result.module = "refused"; }
          try { await fetch(url + "api/tables"); result.api = "read"; }
          catch (error) { result.api = "refused"; }
          result.feed = await new Promise((resolve) => {
            const socket = new WebSocket(url.replace("http", "ws") + "replicate/t");
            let messages = 0;
            socket.onmessage = () => messages++;
            socket.onclose = (event) => resolve({messages, code: event.code});
          });
          return result;
        }""",
        setup.url,
    )
    context.close()
    assert outcome == {"module": "refused", "api": "refused", "feed": {"messages": 0, "code": 1006}}
    assert errors == []
    assert (
        setup.service.metric("livetables_websocket_rejected_requests_total", reason="origin")
        > refused_before
    )


FRAME = """(src) => new Promise((resolve) => {
  const frame = document.createElement("iframe");
  frame.src = src;
  frame.style.cssText = "width: 900px; height: 500px";
  frame.onload = () => resolve();
  document.body.append(frame);
})"""


def test_frame_ancestors_lets_only_the_listed_origins_frame_a_dashboard(
    kafka, topic_name, run_service, other_origin, new_page, browser: Browser
):
    kafka.create_topic(topic_name, partitions=1)
    produce(kafka.bootstrap, topic_name, [_row("alpha")])
    setup = Setup(
        kafka,
        topic_name,
        run_service,
        other_origin,
        dashboards={"d": {"title": "Desk", "panels": [{"table": "t"}]}},
    )
    dashboard = setup.url + "dashboards/d"
    page = new_page(setup.app.origin + "/")
    page.evaluate(FRAME, dashboard)
    frame = wait_until(
        lambda: next((f for f in page.frames if f.url == dashboard), None), what="the frame"
    )
    frame.wait_for_function(
        "() => document.documentElement.dataset.state === 'live'", timeout=30000
    )
    expect(frame.locator("regular-table").get_by_text("ALPHA", exact=True)).to_be_visible(
        timeout=20000
    )
    new_page.screenshot(page, "framed")

    # A page of an origin not in server.frame_ancestors: the browser refuses to show it.
    stranger = other_origin([(r"/", BlankPage, {"livetables_url": setup.url})])
    context = browser.new_context()
    refused = context.new_page()
    console: list[str] = []
    refused.on("console", lambda message: console.append(message.text))
    refused.goto(stranger.origin + "/")
    refused.evaluate(FRAME, dashboard)
    wait_until(lambda: any("frame-ancestors" in text for text in console), what="the refusal")
    framed = [f for f in refused.frames if f != refused.main_frame]
    assert len(framed) == 1
    assert framed[0].url != dashboard or framed[0].locator("perspective-viewer").count() == 0
    context.close()


def test_a_token_reaches_the_feed_and_the_websocket_and_allow_lists_hold(
    kafka, topic_name, run_service, other_origin, new_page, caplog
):
    caplog.set_level(logging.DEBUG)
    kafka.create_topic(topic_name, partitions=1)
    produce(kafka.bootstrap, topic_name, [_row("alpha")])
    setup = Setup(
        kafka,
        topic_name,
        run_service,
        other_origin,
        auth={
            "enabled": True,
            "tokens": {"desk": TOKEN, "other": OTHER_TOKEN},
            "table_access": {"t": {"tokens": ["desk"]}},
        },
    )
    # A refused token: the feed's websocket is refused (a browser is not told why), and
    # the API says why (401).
    new_page.expect_refusal(401, "/api/tables")
    page = new_page(setup.app.origin + "/")
    assert page.evaluate(REPLICATE, [setup.url, "t", TOKEN]) == "ok"
    assert "ALPHA" in page.evaluate(REPLICA_ROWS)["sym"]
    refused = page.evaluate(REPLICATE, [setup.url, "t", OTHER_TOKEN])
    assert refused == f"livetables: {setup.url} has no table named 't' that this token may read"
    refused = page.evaluate(REPLICATE, [setup.url, "t", "not-a-token-at-all-000"])
    assert refused == f"livetables: {setup.url} refused the token"
    for mode in ("server", "replicated"):
        page.evaluate(MOUNT, [setup.url, "t", mode, {}, TOKEN])
        page.wait_for_function(f"() => ({STATE})() === 'live'", timeout=30000)
        expect(_grid(page).get_by_text("ALPHA", exact=True)).to_be_visible(timeout=20000)
        page.evaluate("async () => window.mounted.close()")
        page.evaluate(MOUNT, [setup.url, "t", mode, {}, OTHER_TOKEN])
        page.wait_for_function(f"() => ({STATE})() === 'error'", timeout=30000)
        page.evaluate("async () => window.mounted.close()")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "token=***" in logged
    assert TOKEN not in logged and OTHER_TOKEN not in logged


DEMO_SCHEMAS = {
    "trades": {"id": "string", "sym": "string", "side": "string", "px": "float", "qty": "integer"},
    "quotes": {"sym": "string", "bid": "float", "ask": "float"},
}


def test_the_readme_example_runs_as_the_demo_serves_it(
    kafka, topic_name, run_service, other_origin, new_page
):
    """The demo's second origin serves the README's example; it shows all it promises."""
    topics = {name: f"{topic_name}-{name}" for name in DEMO_SCHEMAS}
    for topic in topics.values():
        kafka.create_topic(topic, partitions=1)
    quotes = [
        (0, sym.encode(), json_bytes({"sym": sym, "bid": 10.0, "ask": 10.0 + spread}))
        for sym, spread in (("AAPL", 0.02), ("MSFT", 0.5), ("IBM", 0.1))
    ]
    produce(kafka.bootstrap, topics["quotes"], quotes)
    trades = [
        (
            0,
            None,
            json_bytes({"id": str(i), "sym": "AB"[i % 2], "side": "buy", "px": 1.0, "qty": i}),
        )
        for i in range(50)
    ]
    produce(kafka.bootstrap, topics["trades"], trades)
    port = free_port()
    app = other_origin([(r"/", ExamplePage, {"livetables_port": port})])
    run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "server": {
                "host": "127.0.0.1",
                "allowed_origins": [app.origin],
                "frame_ancestors": [app.origin],
            },
            "tables": {
                "trades": {"topic": topics["trades"], "schema": DEMO_SCHEMAS["trades"]},
                "quotes": {
                    "topic": topics["quotes"],
                    "schema": DEMO_SCHEMAS["quotes"],
                    "index": "sym",
                },
            },
            "dashboards": {"desk": {"title": "Trading desk", "panels": [{"table": "quotes"}]}},
        },
        port=port,
    )
    page = new_page(f"{app.origin}/")
    expect(page.locator("#quotes-state")).to_have_text("live", timeout=30000)
    expect(page.locator("#quotes regular-table").get_by_text("MSFT", exact=True)).to_be_visible(
        timeout=20000
    )
    chart = page.locator("#volume perspective-viewer-d3fc-ybar")
    expect(chart).to_be_visible(timeout=20000)
    # Two bars drawn (one SVG path each, besides the axes), in the theme's colours.
    expect(chart.locator("svg path").nth(2)).to_be_attached(timeout=20000)
    expect(page.locator("#spread")).to_have_text("MSFT: 0.5000", timeout=20000)
    produce(
        kafka.bootstrap,
        topics["quotes"],
        [(0, b"IBM", json_bytes({"sym": "IBM", "bid": 10.0, "ask": 11.0}))],
    )
    expect(page.locator("#spread")).to_have_text("IBM: 1.0000", timeout=20000)
    frame = wait_until(
        lambda: next((f for f in page.frames if f.url.endswith("/dashboards/desk")), None),
        what="the framed dashboard",
    )
    frame.wait_for_function(
        "() => document.documentElement.dataset.state === 'live'", timeout=30000
    )
    new_page.screenshot(page, "example")
