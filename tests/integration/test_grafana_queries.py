"""The Grafana dashboard: generated from code, and every query answered by a real Prometheus.

The service runs against the real Kafka broker with live traffic (good records,
undecodable ones, tombstones) and a websocket viewer; a real Prometheus scrapes
it every second; then every panel's query, with the dashboard variables
substituted the way Grafana does, must parse and return data.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import re
import shutil
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import perspective
import pytest
from confluent_kafka import Producer
from tornado.websocket import websocket_connect

from tests.helpers import http_get, json_bytes, produce, wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "livetables.json"
GENERATOR = ROOT / "grafana" / "generate.py"
SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}
JOB = "livetables"
# What Grafana puts for $__rate_interval with a 1 s scrape interval: 4 x scrape interval.
RATE_INTERVAL = "4s"


def _generator():
    spec = importlib.util.spec_from_file_location("livetables_grafana_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


# -- the dashboard as code ---------------------------------------------------------------------


def test_committed_dashboard_equals_a_regeneration():
    assert DASHBOARD.read_text(encoding="utf-8") == _generator().render(), (
        "grafana/livetables.json is out of date: run python grafana/generate.py"
    )


def test_dashboard_follows_the_conventions():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert {"job", "instance", "table"} <= set(variables)
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[:4] == ["Overview", "Kafka", "Tables", "Web"]
    assert any(p["type"] == "heatmap" for p in dashboard["panels"])
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
    for panel in _panels(dashboard):
        title = panel["title"]
        assert panel["description"], title
        assert panel["datasource"]["uid"] == "${datasource}", title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel["targets"], title
        for target in panel["targets"]:
            expr = target["expr"]
            assert target["legendFormat"], f"{title}: no legend"
            assert 'job=~"$job"' in expr and 'instance=~"$instance"' in expr, title
            windows = re.findall(r"\b(?:rate|irate|increase)\([^\[]*\[([^\]]*)\]", expr)
            assert all(w == "$__rate_interval" for w in windows), f"{title}: {expr}"
            assert len(windows) == len(re.findall(r"\b(?:rate|irate|increase)\(", expr)), title


# -- live traffic, a viewer, a real Prometheus -------------------------------------------------


class Traffic:
    """Produces records continuously: upserts, now and then a bad record or a tombstone."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic = topic
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            for _ in range(20):
                seq += 1
                key = f"k{seq % 50}"
                if seq % 37 == 0:
                    value = b"{not json"
                elif seq % 41 == 0:
                    value = None
                else:
                    value = json_bytes({"id": key, "sym": "S", "px": seq / 8, "qty": seq})
                self.producer.produce(self.topic, key=key.encode(), value=value, partition=seq % 2)
            self.producer.poll(0)
            self.sent = seq
            self._stop.wait(0.05)  # pacing: about 400 records/s
        self.producer.flush(10)


class Viewer:
    """A Perspective client on its own event loop, subscribed to a view's updates."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.updates = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="viewer", daemon=True)
        self._socket: Any = None
        self._pump: Any = None

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self, table: str) -> None:
        self._thread.start()
        self.run(self._open(table))

    async def _open(self, table_name: str) -> None:
        self._socket = await websocket_connect(self.url)

        async def send(message: bytes) -> None:
            await self._socket.write_message(message, binary=True)

        client = perspective.AsyncClient(send)

        async def pump() -> None:
            while (message := await self._socket.read_message()) is not None:
                await client.handle_response(message)

        self._pump = asyncio.ensure_future(pump())
        table = await client.open_table(table_name)
        view = await table.view(group_by=["sym"], columns=["qty"])

        def on_update(*_args: Any) -> None:
            self.updates += 1

        await view.on_update(on_update)
        # A request the server refuses: a text frame on the binary protocol.
        await self._socket.write_message("not a perspective request")

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._socket is not None:
                self._socket.close()
            if self._pump is not None:
                self._pump.cancel()

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def _one_session(url: str) -> None:
    """A session that connects, lists the tables and leaves (a counted disconnect)."""

    async def session() -> None:
        ws = await websocket_connect(url)

        async def send(message: bytes) -> None:
            await ws.write_message(message, binary=True)

        client = perspective.AsyncClient(send)

        async def pump() -> None:
            while (message := await ws.read_message()) is not None:
                await client.handle_response(message)

        task = asyncio.ensure_future(pump())
        assert await client.get_hosted_table_names()
        ws.close()
        task.cancel()

    asyncio.run(session())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A real Prometheus on a loopback port, scraping one target every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        assert binary, (
            "prometheus not found: run scripts/install-system-deps.sh (Debian package prometheus)"
        )
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.log = workdir / "prometheus.log"
        self.args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=30, what="Prometheus ready")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"Prometheus exited:\n{self.log.read_text()[-3000:]}")
        return http_get(self.url + "/-/ready")[0] == 200

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def api(self, path: str, **params: str | list[str]) -> tuple[int, Any]:
        return http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}")

    def query(self, expr: str) -> tuple[int, Any]:
        return self.api("query", query=expr)

    def scrapes(self) -> float:
        status, body = self.query(f'count_over_time(up{{job="{JOB}"}}[1m])')
        if status != 200 or not body["data"]["result"]:
            return 0
        return float(body["data"]["result"][0]["value"][1])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator:
    """Start Prometheus servers; every one started is stopped at the end of the test."""
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = Prometheus(workdir, target)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def grafana_regex(values: list[str]) -> str:
    """A multi-value variable as Grafana writes it into a PromQL regex matcher."""

    def escape(value: str) -> str:
        value = value.replace("\\", "\\\\\\\\")
        return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)

    escaped = [escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(expr: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def _has_data(result: list[dict]) -> bool:
    for series in result:
        value = float(series["value"][1])
        if not math.isnan(value):
            return True
    return False


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    kafka, topic_name, run_service, prometheus, tmp_path
):
    kafka.create_topic(topic_name, partitions=2)
    kafka.create_topic(f"{topic_name}-dlq")
    produce(
        kafka.bootstrap,
        topic_name,
        (
            (i % 2, f"k{i}".encode(), json_bytes({"id": f"k{i}", "sym": "S", "px": 1.0, "qty": i}))
            for i in range(500)
        ),
    )
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "snapshots": {"dir": str(tmp_path / "snapshots"), "interval": "1s"},
            "tables": {
                "ticks": {
                    "topic": topic_name,
                    "schema": SCHEMA,
                    "limit": 2000,
                    "dead_letter_topic": f"{topic_name}-dlq",
                    "retention": "1h",
                },
                "last": {"topic": topic_name, "schema": SCHEMA, "index": "id"},
                "by_sym": {"from": "last", "view": {"group_by": ["sym"], "columns": ["qty"]}},
            },
        }
    )
    wait_until(service.ready, what="catch-up")
    traffic = Traffic(kafka.bootstrap, topic_name)
    viewer = Viewer(service.ws_url)
    try:
        traffic.start()
        viewer.start("last")
        _one_session(service.ws_url)
        wait_until(lambda: viewer.updates > 0, what="live updates reach the viewer")
        wait_until(
            lambda: service.metric(
                "livetables_decode_errors_total", table="last", reason="invalid_json"
            ),
            what="live decode errors",
        )
        wait_until(
            lambda: service.metric("livetables_websocket_disconnects_total", reason="client"),
            what="a disconnect",
        )
        target = f"127.0.0.1:{service.service.port}"
        prom = prometheus(target)
        # Enough scrapes that every 4 s rate() window holds several samples.
        wait_until(lambda: prom.scrapes() >= 6, timeout=30, what="6 scrapes")
        status, up = prom.query(f'up{{job="{JOB}"}}')
        assert status == 200 and up["data"]["result"][0]["value"][1] == "1", up

        dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
        values = {
            "__rate_interval": RATE_INTERVAL,
            "job": JOB,
            "instance": grafana_regex([target]),
            "table": grafana_regex(["last", "ticks", "by_sym"]),
        }

        # The variables' own queries: label_values(selector, label).
        expected = {"job": {JOB}, "instance": {target}, "table": {"last", "ticks", "by_sym"}}
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.*), *(\w+)\)", variable["query"])
            assert match, variable["query"]
            selector = substitute(match.group(1), values)
            status, body = prom.api(f"label/{match.group(2)}/values", **{"match[]": selector})
            assert status == 200, (variable["name"], body)
            assert expected[variable["name"]] <= set(body["data"]), (variable["name"], body)

        failures = []
        checked = 0
        for panel in _panels(dashboard):
            for target_ in panel["targets"]:
                expr = substitute(target_["expr"], values)
                where = f"panel {panel['title']!r} query {target_['refId']}"
                status, body = prom.query(expr)
                checked += 1
                if status != 200 or body.get("status") != "success":
                    failures.append(f"{where}: error {body!r}: {expr}")
                elif not body["data"]["result"]:
                    failures.append(f"{where}: no data: {expr}")
                elif not _has_data(body["data"]["result"]):
                    failures.append(f"{where}: only NaN: {expr}")
        assert not failures, "\n".join(failures)
        assert checked >= 30
    finally:
        viewer.stop()
        traffic.stop()
    assert traffic.sent > 0
