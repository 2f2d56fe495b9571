"""What the HTTP side gives away and whom it believes: headers, error pages, logs, names,
forwarded addresses, Host names, the metrics endpoint."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import wait_until
from tests.security_helpers import get_request, raw_http

SCHEMA = {"id": "string", "px": "float"}
GRAFANA = "grafana-0123456789abcdef-token"
OPS = "ops-token-fedcba9876543210-xyz"
METRICS = "metrics-0123456789abcdef-token"
RESTRICTED = "vault_x7q"  # a name that appears nowhere else on the pages


def _config(kafka, topic: str, **server) -> dict:
    return {
        "kafka": {"bootstrap_servers": kafka.bootstrap},
        "server": server,
        "tables": {"quotes": {"topic": topic, "schema": SCHEMA}},
    }


@pytest.fixture
def topic(kafka, topic_name) -> str:
    kafka.create_topic(topic_name, partitions=1)
    return topic_name


def _get(service, path: str, *, host: str = "127.0.0.1", headers: str = ""):
    return raw_http(service.service.port, get_request(path, host=host, extra=headers))


def test_every_answer_carries_the_security_headers(kafka, topic, run_service):
    config = _config(kafka, topic, frame_ancestors=["https://grafana.example.test"])
    config["dashboards"] = {"d": {"panels": [{"table": "quotes"}]}}
    service = run_service(config)
    wait_until(service.ready, what="ready")
    answers = {
        "/": 200,
        "/tables/quotes": 200,
        "/dashboards/d": 200,
        "/api/tables": 200,
        "/healthz": 200,
        "/metrics": 200,
        "/static/livetables/livetables.js": 200,
        "/tables/nope": 404,
        "/dashboards/d?mode=sideways": 400,
        "/no/such/path": 404,
        "/static/livetables/../../config.py": 403,
        "/websocket": 400,  # not an upgrade
    }
    for path, expected in answers.items():
        status, headers, body = _get(service, path)
        assert status == expected, (path, status, body[:300])
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "same-origin", path
        policy = headers["content-security-policy"]
        assert "script-src 'self' 'wasm-unsafe-eval';" in policy, path
        assert "frame-ancestors 'self' https://grafana.example.test" in policy, path
        assert "object-src 'none'" in policy and "base-uri 'none'" in policy
        if status >= 400:
            # No stack trace, no file path, no exception text: a status and a sentence.
            text = body.decode()
            assert "Traceback" not in text and ".py" not in text and "/work" not in text, text
            assert len(text) < 300, text
    status, _, body = _get(service, "/dashboards/d?mode=sideways")
    assert body == b"400 Bad Request\nmode must be replicated or server, not 'sideways'\n"


def test_a_token_in_the_query_is_masked_in_every_log_line(kafka, topic, run_service, caplog):
    config = _config(kafka, topic)
    config["auth"] = {"enabled": True, "tokens": {"grafana": GRAFANA}}
    service = run_service(config)
    caplog.set_level(logging.DEBUG)
    # Tornado decodes parameter names, so %74oken authenticates like token does.
    for path in (
        f"/?%74oken={GRAFANA}",
        f"/api/tables?mode=x&TO%4Ben={GRAFANA}",  # no login (names are case-sensitive)
        f"/tables/nope?%74oken={GRAFANA}",
        f"/no/such/path?token={GRAFANA}",
    ):
        status, _, _ = _get(service, path)
        assert status in (200, 401, 404), path
    assert _get(service, f"/?%74oken={GRAFANA}")[0] == 200
    wait_until(
        lambda: sum(r.name == "tornado.access" for r in caplog.records) >= 5,
        what="the access log lines",
    )
    lines = [record.getMessage() for record in caplog.records]
    assert not [line for line in lines if GRAFANA in line], "a token reached the log"
    assert any("/?%74oken=*** " in line for line in lines), lines


def test_restricted_table_names_stay_hidden_from_users_who_may_not_read_them(
    kafka, topic, run_service
):
    config = _config(kafka, topic, metrics_token=METRICS)
    config["tables"][RESTRICTED] = {"topic": topic, "schema": SCHEMA}
    config["dashboards"] = {
        "mixed": {"title": "Mixed desk", "panels": [{"table": "quotes"}, {"table": RESTRICTED}]},
        "open": {"title": "Open desk", "panels": [{"table": "quotes"}]},
    }
    config["auth"] = {
        "enabled": True,
        "tokens": {"grafana": GRAFANA, "ops": OPS},
        "table_access": {RESTRICTED: {"tokens": ["ops"]}},
    }
    service = run_service(config)

    def index(token: str) -> str:
        status, _, body = _get(service, "/", headers=f"Authorization: Bearer {token}\r\n")
        assert status == 200
        return body.decode()

    page = index(GRAFANA)
    assert RESTRICTED not in page
    assert "Open desk" in page and "Mixed desk" not in page
    page = index(OPS)
    assert RESTRICTED in page and "Mixed desk" in page
    # /metrics names every table in its labels: with metrics_token set, only the scraper
    # holding it reads them.
    assert _get(service, "/metrics")[0] == 401
    assert _get(service, "/metrics", headers=f"Authorization: Bearer {GRAFANA}\r\n")[0] == 401
    status, _, body = _get(service, "/metrics", headers=f"Authorization: Bearer {METRICS}\r\n")
    assert status == 200 and f'table="{RESTRICTED}"' in body.decode()
    assert _get(service, "/healthz")[0] == 200  # probes stay open


def _access_line(caplog, path: str) -> str:
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    return next(line for line in reversed(lines) if f" {path} " in line)


def test_forwarded_addresses_are_believed_only_from_trusted_proxies(
    kafka, topic, run_service, caplog
):
    caplog.set_level(logging.DEBUG, logger="tornado.access")
    spoof = "X-Forwarded-For: 203.0.113.7\r\nX-Real-Ip: 203.0.113.8\r\n"
    untrusted = run_service(_config(kafka, topic))
    assert _get(untrusted, "/api/tables?spoofed", headers=spoof)[0] == 200
    wait_until(lambda: "spoofed" in caplog.text, what="the access log line")
    assert "(127.0.0.1)" in _access_line(caplog, "/api/tables?spoofed")
    assert "203.0.113" not in caplog.text
    # Behind a trusted proxy, the client is the rightmost address the proxies did not add.
    trusted = run_service(_config(kafka, topic, trusted_proxies=["127.0.0.0/8", "10.9.0.0/16"]))
    chain = "X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.9.1.1\r\n"
    assert _get(trusted, "/api/tables?proxied", headers=chain)[0] == 200
    wait_until(lambda: "proxied" in caplog.text, what="the access log line")
    assert "(203.0.113.9)" in _access_line(caplog, "/api/tables?proxied")


def test_a_host_not_allowed_is_refused(kafka, topic, run_service):
    service = run_service(_config(kafka, topic, allowed_hosts=["desk.example.test"]))
    port = service.service.port
    assert _get(service, "/api/tables", host="desk.example.test")[0] == 200
    assert _get(service, "/api/tables", host=f"desk.example.test:{port}")[0] == 200
    # DNS rebinding: the attacker's name, pointing at this service.
    for host in ("evil.example.test", "evil.example.test:80", "desk.example.test.evil.test"):
        status, _, body = _get(service, "/api/tables", host=host)
        assert status == 400 and b"does not answer to host" in body, host
    status, _, _ = _get(
        service,
        "/websocket",
        host="evil.example.test",
        headers="Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
    assert status == 400
    # An IP address cannot come from rebinding: probes and scrapers keep working.
    assert _get(service, "/healthz", host=f"127.0.0.1:{port}")[0] == 200
    assert _get(service, "/metrics", host="10.1.2.3:8080")[0] == 200
    assert service.metric("livetables_http_requests_rejected_total", reason="host") == 4
