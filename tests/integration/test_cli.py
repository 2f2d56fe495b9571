"""The ``livetables`` command as a user runs it: check, serve (SIGTERM), demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

from service.localkafka.broker import free_port
from tests.helpers import http_get, json_bytes, produce, wait_until

LIVETABLES = [sys.executable, "-m", "service.cli"]

GOOD = """\
kafka:
  bootstrap_servers: {bootstrap}
  client: {{security.protocol: PLAINTEXT}}
server: {{host: 127.0.0.1, port: {port}}}
tables:
  trades:
    topic: {topic}
    format: json
    schema: {{id: string, sym: string, px: float, qty: integer, ts: datetime}}
    limit: 1000
  quotes:
    topic: {topic}
    schema: {{sym: string, bid: float, ask: float}}
    index: sym
    start: -15m
"""

BROKEN = """\
kafka:
  bootstrap_servers: localhost:9092
  client: {group.id: mine}
tables:
  trades:
    topic: trades
    schema: {id: string, px: double}
    limit: -5
  quotes:
    topics: [quotes]
    topic: quotes
    schema: {sym: string}
    index: symbol
    start: yesterday
  extra:
    topic: t
    shema: {a: string}
servr: {port: 1}
"""


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        LIVETABLES + args, capture_output=True, text=True, timeout=60, check=False, **kwargs
    )


def test_check_accepts_a_good_file_and_summarises_it(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD.format(bootstrap="localhost:9092", port=8080, topic="t"))
    result = _run(["check", "--config", str(path)])
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "trades: json from t, rolling window of 1000 rows" in result.stdout
    assert "quotes: json from t, indexed on sym, start -15m" in result.stdout


def test_check_lists_every_error_with_its_key_path(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = _run(["check", "--config", str(path)])
    assert result.returncode == 2
    err = result.stderr
    assert str(path) in err
    for expected in [
        "kafka.client: Value error, group.id cannot be set here",
        "tables.trades.schema.px: Input should be 'string', 'integer', 'float'",
        "tables.trades.limit: Input should be greater than 0",
        "tables.quotes.start: start must be earliest, latest or a lookback",
        "tables.extra.shema: unknown key",
        "tables.extra.schema: required key is missing",
        "servr: unknown key",
    ]:
        assert expected.replace("Value error, ", "") in err, (expected, err)


def test_check_reports_yaml_syntax_errors_with_a_line(tmp_path):
    path = tmp_path / "syntax.yaml"
    path.write_text("tables:\n  t: {topic: a\n  u: b\n")
    result = _run(["check", "--config", str(path)])
    assert result.returncode == 2
    assert "line 3" in result.stderr and "not valid YAML" in result.stderr


def test_check_names_a_missing_file(tmp_path):
    result = _run(["check", "--config", str(tmp_path / "nope.yaml")])
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr and "cannot read the file" in result.stderr


def test_env_overrides_the_file(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD.format(bootstrap="localhost:9092", port=8080, topic="t"))
    env = {
        **os.environ,
        "LIVETABLES_KAFKA__BOOTSTRAP_SERVERS": "broker-a:9093",
        "LIVETABLES_TABLES__TRADES__LIMIT": "77",
    }
    result = _run(["check", "--config", str(path)], env=env)
    assert result.returncode == 0, result.stderr
    assert "kafka: broker-a:9093" in result.stdout
    assert "rolling window of 77 rows" in result.stdout


def test_serve_serves_and_stops_gracefully_on_sigterm(kafka, topic_name, tmp_path):
    kafka.create_topic(topic_name, partitions=1)
    produce(
        kafka.bootstrap, topic_name, [(0, b"A", json_bytes({"sym": "A", "bid": 1.0, "ask": 1.1}))]
    )
    port = free_port()
    path = tmp_path / "serve.yaml"
    path.write_text(GOOD.format(bootstrap=kafka.bootstrap, port=port, topic=topic_name))
    process = subprocess.Popen(
        [*LIVETABLES, "serve", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, what="ready")
        _status, tables = http_get(f"http://127.0.0.1:{port}/api/tables")
        assert {t["name"]: t["rows"] for t in tables}["quotes"] == 1
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output.decode()[-2000:]
    assert b"livetables stopped" in output


def test_demo_with_an_existing_kafka_serves_live_demo_tables(kafka):
    port, embed_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            *LIVETABLES,
            *("demo", "--bootstrap", kafka.bootstrap),
            *("--port", str(port), "--embed-port", str(embed_port)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def rows() -> dict[str, int] | None:
            status, tables = http_get(f"http://127.0.0.1:{port}/api/tables")
            if status != 200:
                return None
            counts = {t["name"]: t["rows"] for t in tables}
            return counts if all(counts.values()) else None

        try:
            counts = wait_until(rows, timeout=60, what="demo tables filling")
        except AssertionError:
            process.send_signal(signal.SIGUSR1)  # thread stacks into the output, for the report
            process.kill()
            raise AssertionError(process.communicate(timeout=10)[0].decode()[-6000:]) from None
        assert set(counts) == {"trades", "quotes", "by_symbol"}
        first = counts["trades"]
        wait_until(lambda: (rows() or {}).get("trades", 0) > first, what="live trades")
        # The second origin: an app embedding the tables, which the service lets in.
        example = f"http://127.0.0.1:{embed_port}"
        with urllib.request.urlopen(example + "/", timeout=10) as response:
            page = response.read().decode()
            policy = response.headers["Content-Security-Policy"]
        assert f'from "http://127.0.0.1:{port}/static/livetables/embed.js"' in page
        assert f"connect-src 'self' http://127.0.0.1:{port} ws://127.0.0.1:{port}" in policy
        module = urllib.request.Request(
            f"http://127.0.0.1:{port}/static/livetables/embed.js", headers={"Origin": example}
        )
        with urllib.request.urlopen(module, timeout=10) as response:
            assert response.headers["Access-Control-Allow-Origin"] == example
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output.decode()[-2000:]
    assert f"http://127.0.0.1:{port}/" in output.decode()
    assert f"http://127.0.0.1:{embed_port}/" in output.decode()
