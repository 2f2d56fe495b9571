"""Who is asking and by which name: forwarded addresses, Host names, CSP, config checks."""

from __future__ import annotations

import pytest

from service.config import ConfigError, parse_config
from service.security.headers import security_headers
from service.security.network import HostPolicy, TrustedProxies, valid_frame_ancestor
from service.security.slots import SessionSlots
from service.security.tokens import redact
from service.web.pages import _script_json

MINIMAL = {"tables": {"t": {"topic": "a", "schema": {"x": "string"}}}}


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # An untrusted peer: its headers are whatever it wrote.
        ("198.51.100.5", {"X-Forwarded-For": "10.0.0.1"}, "198.51.100.5"),
        ("198.51.100.5", {"X-Real-Ip": "10.0.0.1"}, "198.51.100.5"),
        # A trusted proxy: the rightmost address it (and its fellow proxies) did not add.
        ("10.0.0.2", {"X-Forwarded-For": "203.0.113.9"}, "203.0.113.9"),
        ("10.0.0.2", {"X-Forwarded-For": "1.1.1.1, 203.0.113.9, 10.0.5.5"}, "203.0.113.9"),
        ("10.0.0.2", {"X-Forwarded-For": "10.0.0.7, 10.0.5.5"}, "10.0.0.7"),
        ("10.0.0.2", {"X-Forwarded-For": "junk, 203.0.113.9"}, "203.0.113.9"),
        ("10.0.0.2", {"X-Forwarded-For": "203.0.113.9, junk"}, "10.0.0.2"),
        ("10.0.0.2", {"X-Forwarded-For": "[2001:db8::1]"}, "2001:db8::1"),
        ("10.0.0.2", {"X-Real-Ip": "203.0.113.4"}, "203.0.113.4"),
        ("10.0.0.2", {"X-Real-Ip": "not-an-ip"}, "10.0.0.2"),
        ("10.0.0.2", {}, "10.0.0.2"),
        ("::ffff:10.0.0.2", {"X-Forwarded-For": "203.0.113.9"}, "203.0.113.9"),
        ("10.0.0.2", {"X-Forwarded-For": ",".join(["1.2.3.4"] * 40)}, "10.0.0.2"),
    ],
)
def test_forwarded_addresses(peer, headers, expected):
    proxies = TrustedProxies(["10.0.0.0/16"])
    assert proxies.client_address(peer, headers) == expected


def test_forwarded_scheme_only_from_a_trusted_proxy():
    proxies = TrustedProxies(["10.0.0.2"])
    assert proxies.client_protocol("10.0.0.2", {"X-Forwarded-Proto": "https"}, "http") == "https"
    assert proxies.client_protocol("10.0.0.3", {"X-Forwarded-Proto": "https"}, "http") == "http"
    assert proxies.client_protocol("10.0.0.2", {"X-Forwarded-Proto": "gopher"}, "http") == "http"
    assert not TrustedProxies().trusts("127.0.0.1")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("desk.example.com", True),
        ("DESK.example.com.:8443", True),
        ("a.b.internal.test", True),
        ("internal.test", False),  # *.internal.test is for subdomains
        ("evil.example", False),
        ("desk.example.com.evil.example", False),
        ("10.1.2.3:8080", True),  # an IP cannot come from DNS rebinding
        ("[::1]:8080", True),
        ("", True),  # no Host: not a browser
    ],
)
def test_allowed_hosts(host, allowed):
    policy = HostPolicy(["desk.example.com", "*.internal.test"])
    assert policy.allows(host) is allowed
    assert HostPolicy([]).allows("anything.example")


def test_tokens_are_masked_even_when_their_name_is_percent_encoded():
    assert redact("GET /?%74oken=s3cret&mode=server (1.2.3.4)") == (
        "GET /?%74oken=***&mode=server (1.2.3.4)"
    )
    assert redact("GET /x?a=1&to%6Ben=s3cret") == "GET /x?a=1&to%6Ben=***"
    assert redact("GET /x?TOKEN=s3cret") == "GET /x?TOKEN=***"
    assert redact("GET /x?tokens=kept") == "GET /x?tokens=kept"


def test_script_json_cannot_leave_or_confuse_its_script_element():
    text = _script_json({"title": "<!--<script></script>&\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert text == '{"title": "\\u003c!--\\u003cscript\\u003e\\u003c/script\\u003e\\u0026\\u2028"}'


def test_security_headers_and_frame_ancestors():
    headers = security_headers()
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    framed = security_headers(["https://grafana.example.com"])
    policy = framed["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://grafana.example.com" in policy
    assert "X-Frame-Options" not in framed  # it cannot say "these origins too"
    assert valid_frame_ancestor("https://*.example.com:8443")
    assert not valid_frame_ancestor("https://y.example\n")
    assert not valid_frame_ancestor("https://x.example; script-src *")
    assert "'unsafe-eval'" not in policy and "script-src 'self' 'wasm-unsafe-eval';" in policy


def test_session_slots_count_per_address_and_in_total():
    slots = SessionSlots(total=3, per_address=2)
    slots.take("a")
    slots.take("a")
    assert slots.refusal("a") == "sessions_per_address"
    slots.take("b")
    assert slots.refusal("c") == "sessions"
    slots.give_back("a")
    assert slots.refusal("c") is None and slots.refusal("a") is None


def test_server_section_checks_its_new_keys():
    config = parse_config(MINIMAL)
    server = config.server
    assert (server.max_connections, server.max_connections_per_address) == (10000, 500)
    assert (server.max_websocket_sessions, server.max_websocket_sessions_per_address) == (
        4000,
        200,
    )
    assert server.header_timeout_seconds == 15 and server.max_header_bytes == 32768
    assert server.trusted_proxies == server.allowed_hosts == server.frame_ancestors == []
    assert server.metrics_token is None
    bad = {
        "trusted_proxies": ["10.0.0.0/33"],
        "allowed_hosts": ["https://desk.example.com"],
        "frame_ancestors": ["https://x.example.com; script-src *", "https://y.example\n"],
        "metrics_token": "short",
        "max_connections": 0,
    }
    with pytest.raises(ConfigError) as error:
        parse_config({**MINIMAL, "server": bad})
    problems = "\n".join(error.value.errors)
    for key in bad:
        assert f"server.{key}" in problems, (key, problems)
    secret = "m" * 20
    config = parse_config({**MINIMAL, "server": {"metrics_token": secret}})
    assert secret not in repr(config)
