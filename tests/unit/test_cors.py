"""CORS for embedding (service/security/cors.py): exactly the listed origins, on exactly the
embedding files and the API; the Tornado transform puts the headers on every such answer."""

from __future__ import annotations

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from service.security.cors import CorsPolicy, cors_transform, shared
from service.security.origins import OriginPolicy

PORTAL = "https://portal.example.test"
POLICY = CorsPolicy(OriginPolicy([PORTAL, "http://localhost:8081"]))


@pytest.mark.parametrize(
    "path",
    [
        "/static/livetables/embed.js",
        "/static/livetables/replica.js",
        "/static/perspective/client/dist/cdn/perspective.js",
        "/static/perspective/server/dist/wasm/perspective-server.wasm",
        "/static/perspective/viewer/dist/css/themes.css",
        "/api/tables",
    ],
)
def test_the_listed_origins_may_read_the_embedding_files_and_the_api(path):
    assert shared(path)
    assert POLICY.headers(path, PORTAL) == {
        "Vary": "Origin",
        "Access-Control-Allow-Origin": PORTAL,
    }


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.test",
        "http://portal.example.test",  # another scheme: another origin
        "https://portal.example.test:8443",  # another port: another origin
        "https://portal.example.test.evil.test",
        "null",  # sandboxed frames, file:// pages
        "",
        None,
        "https://portal.example.test\r\nSet-Cookie: x=1",
    ],
)
def test_other_origins_get_no_cors_header_only_vary(origin):
    assert POLICY.headers("/static/livetables/embed.js", origin) == {"Vary": "Origin"}


@pytest.mark.parametrize(
    "path", ["/", "/tables/t", "/dashboards/d", "/metrics", "/healthz", "/replicate/t", "/api"]
)
def test_pages_probes_and_feeds_are_never_shared(path):
    assert not shared(path)
    assert POLICY.headers(path, PORTAL) == {}


def test_the_origin_is_answered_as_browsers_spell_it_never_echoed_raw():
    # Browsers compare the header byte for byte with their serialisation of the origin.
    assert (
        POLICY.headers("/api/tables", "HTTPS://Portal.Example.Test:443")[
            "Access-Control-Allow-Origin"
        ]
        == PORTAL
    )
    assert (
        POLICY.headers("/api/tables", "http://localhost:8081")["Access-Control-Allow-Origin"]
        == "http://localhost:8081"
    )


def test_any_origin_when_star_is_listed_but_still_named_not_starred():
    policy = CorsPolicy(OriginPolicy(["*"]))
    headers = policy.headers("/static/livetables/embed.js", "https://anyone.example.test")
    assert headers["Access-Control-Allow-Origin"] == "https://anyone.example.test"


def test_a_preflight_allows_get_with_an_authorization_header_and_no_credentials():
    headers = POLICY.headers("/api/tables", PORTAL, "OPTIONS", preflight=True)
    assert headers["Access-Control-Allow-Methods"] == "GET"
    assert headers["Access-Control-Allow-Headers"] == "Authorization"
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in headers
    assert "Access-Control-Allow-Methods" not in POLICY.headers(
        "/api/tables", "https://evil.example.test", "OPTIONS", preflight=True
    )


def _transformed(path: str, origin: str | None, vary: str | None = None) -> HTTPHeaders:
    request = HTTPServerRequest(
        headers=HTTPHeaders({"Host": "desk.example.test"}),
        start_line=RequestStartLine("GET", path, "HTTP/1.1"),
    )
    if origin is not None:
        request.headers["Origin"] = origin
    headers = HTTPHeaders()
    if vary:
        headers["Vary"] = vary
    transform = cors_transform(POLICY)(request)
    _status, headers, _chunk = transform.transform_first_chunk(200, headers, b"", True)
    return headers


def test_the_transform_adds_the_headers_and_keeps_an_existing_vary():
    headers = _transformed("/static/livetables/embed.js", PORTAL, vary="Accept-Encoding")
    assert headers["Access-Control-Allow-Origin"] == PORTAL
    assert headers["Vary"] == "Accept-Encoding, Origin"
    assert "Access-Control-Allow-Origin" not in _transformed("/static/livetables/embed.js", None)
    assert "Vary" not in _transformed("/tables/t", PORTAL)


def test_origin_listed_is_the_configured_list_only():
    origins = OriginPolicy([PORTAL])
    assert origins.listed("https://PORTAL.example.test") == PORTAL
    assert origins.listed("https://desk.example.test") is None
    # The service's own origin may open websockets, but is not "listed" for CORS.
    assert origins.allows("https://desk.example.test", "desk.example.test")
