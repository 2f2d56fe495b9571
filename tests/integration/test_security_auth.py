"""Authentication and origins on the real service: tokens, JWTs from a local JWKS, allow-lists."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import perspective
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tornado.httpclient import HTTPClientError

from service.remote import connect
from tests.helpers import json_bytes, produce, wait_until
from tests.security_helpers import open_socket, poll

SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}
AUDIENCE = "livetables"
GRAFANA = "grafana-0123456789abcdef-token"
OPS = "ops-token-fedcba9876543210-xyz"


class Provider:
    """An identity provider's JWKS endpoint on loopback, and a signer for its tokens."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "desk-1", "use": "sig", "alg": "RS256"}]}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(provider.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/certs"
        self.issuer = f"http://127.0.0.1:{self.http.server_address[1]}/realms/desk"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def token(self, key=None, kid: str = "desk-1", algorithm: str = "RS256", **claims) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": AUDIENCE, "sub": "alice", "exp": now + 600}
        payload.update(claims)
        return jwt.encode(payload, key or self.key, algorithm=algorithm, headers={"kid": kid})

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.close()


@pytest.fixture
def secured(kafka, topic_name, run_service, provider):
    kafka.create_topic(topic_name, partitions=1)
    produce(
        kafka.bootstrap,
        topic_name,
        [
            (0, f"k{i}".encode(), json_bytes({"id": f"k{i}", "sym": "S", "px": i, "qty": i}))
            for i in range(50)
        ],
    )
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "server": {"allowed_origins": ["https://grafana.example.test"]},
            "tables": {
                "quotes": {"topic": topic_name, "schema": SCHEMA, "index": "id"},
                "secret": {"topic": topic_name, "schema": SCHEMA},
            },
            "dashboards": {"mixed": {"panels": [{"table": "quotes"}, {"table": "secret"}]}},
            "auth": {
                "enabled": True,
                "tokens": {"grafana": GRAFANA, "ops": OPS},
                "oidc": {
                    "jwks_url": provider.url,
                    "issuer": provider.issuer,
                    "audience": AUDIENCE,
                    "leeway_seconds": 0,
                },
                "table_access": {
                    "secret": {"tokens": ["ops"], "claims": {"groups": ["risk"]}},
                },
            },
        }
    )
    wait_until(service.ready, what="catch-up")
    return service


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, str]:
    """Status, headers (names case-insensitive) and body of a GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_probes_stay_open_and_everything_else_needs_a_token(secured):
    service = secured
    for path in ("/healthz", "/readyz", "/metrics", "/static/livetables/livetables.js"):
        assert fetch(service.url + path)[0] == 200, path
    for path in ("/", "/api/tables", "/tables/quotes", "/dashboards/mixed"):
        status, headers, _ = fetch(service.url + path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert fetch(service.url + path, bearer("wrong-token-0123456789"))[0] == 401
    assert fetch(service.url + "/api/tables", bearer(GRAFANA))[0] == 200
    assert service.metric("livetables_auth_failures_total", reason="missing") >= 4
    assert service.metric("livetables_auth_failures_total", reason="invalid") >= 4


def test_jwts_good_wrong_expired_and_foreign_issuer(secured, provider):
    service = secured
    url = service.url + "/api/tables"
    assert fetch(url, bearer(provider.token()))[0] == 200
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "expired": provider.token(exp=int(time.time()) - 300),
        "issuer": provider.token(iss="https://other-idp.example.test/"),
        "audience": provider.token(aud="another-app"),
        "invalid": provider.token(key=foreign),  # the right kid, signed by someone else
    }
    for reason, token in cases.items():
        status, _, _ = fetch(url, bearer(token))
        assert status == 401, reason
        assert service.metric("livetables_auth_failures_total", reason=reason) >= 1, reason
    es = ec.generate_private_key(ec.SECP256R1())
    assert fetch(url, bearer(provider.token(key=es, kid="nope", algorithm="ES256")))[0] == 401


def test_a_token_in_the_page_url_becomes_a_cookie_for_the_page(secured):
    service = secured
    status, headers, _ = fetch(f"{service.url}/tables/quotes?token={GRAFANA}")
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"livetables_token={GRAFANA}")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    jar = {"Cookie": f"livetables_token={GRAFANA}"}
    assert fetch(service.url + "/api/tables", jar)[0] == 200
    assert fetch(service.url + "/", jar)[0] == 200


def test_websockets_need_a_token_from_header_query_or_cookie(secured, provider):
    service = secured

    async def scenario() -> None:
        with pytest.raises(HTTPClientError) as refused:
            await open_socket(service.ws_url)
        assert refused.value.code == 401
        with pytest.raises(HTTPClientError):
            await open_socket(service.ws_url, bearer("wrong-token-0123456789"))
        for url, headers in [
            (service.ws_url, bearer(GRAFANA)),
            (f"{service.ws_url}?token={provider.token()}", {}),
            (service.ws_url, {"Cookie": f"livetables_token={GRAFANA}"}),
        ]:
            remote = await connect(url, headers=headers)
            table = await remote.client.open_table("quotes")
            assert await table.size() == 50
            remote.close()
        replicate = service.ws_url.replace("/websocket", "/replicate/quotes")
        with pytest.raises(HTTPClientError):
            await open_socket(replicate)
        socket = await open_socket(replicate, bearer(GRAFANA))
        hello = json.loads(await socket.read_message())
        assert hello["table"] == "quotes"
        socket.close()

    asyncio.run(scenario())


def test_foreign_origins_are_refused_and_listed_ones_accepted(secured):
    service = secured
    host = service.url.removeprefix("http://")

    async def scenario() -> None:
        # The same host on another port is another origin (the scheme is not compared:
        # behind a TLS-terminating proxy the browser says https where the service sees http).
        for origin in ("https://evil.example.test", "null", "http://127.0.0.1:1"):
            with pytest.raises(HTTPClientError) as refused:
                await open_socket(service.ws_url, {**bearer(GRAFANA), "Origin": origin})
            assert refused.value.code == 403, origin
        for origin in (f"http://{host}", f"https://{host}", "https://grafana.example.test"):
            socket = await open_socket(service.ws_url, {**bearer(GRAFANA), "Origin": origin})
            socket.close()

    asyncio.run(scenario())
    assert service.metric("livetables_websocket_rejected_requests_total", reason="origin") == 3


def test_per_table_allow_lists(secured, provider):
    service = secured
    grafana, ops = bearer(GRAFANA), bearer(OPS)
    risk = bearer(provider.token(groups=["risk", "desk"]))
    assert fetch(service.url + "/tables/secret", grafana)[0] == 403
    assert fetch(service.url + "/dashboards/mixed", grafana)[0] == 403
    assert fetch(service.url + "/tables/secret", ops)[0] == 200
    assert fetch(service.url + "/dashboards/mixed", risk)[0] == 200
    _, _, listing = fetch(service.url + "/api/tables", grafana)
    assert [t["name"] for t in json.loads(listing)] == ["quotes"]
    _, _, listing = fetch(service.url + "/api/tables", ops)
    assert sorted(t["name"] for t in json.loads(listing)) == ["quotes", "secret"]

    async def scenario() -> None:
        replicate = service.ws_url.replace("/websocket", "/replicate/secret")
        with pytest.raises(HTTPClientError) as refused:
            await open_socket(replicate, grafana)
        assert refused.value.code == 403
        remote = await connect(service.ws_url, headers=grafana)
        assert await remote.client.get_hosted_table_names() == ["quotes"]
        with pytest.raises(perspective.PerspectiveError):
            await remote.client.open_table("secret")
        remote.close()
        remote = await connect(service.ws_url, headers=risk)
        assert sorted(await remote.client.get_hosted_table_names()) == ["quotes", "secret"]
        table = await remote.client.open_table("secret")
        assert await table.size() == 50
        remote.close()

    asyncio.run(scenario())


def test_a_session_ends_when_its_jwt_expires(secured, provider):
    service = secured
    token = provider.token(exp=int(time.time()) + 2)

    async def scenario() -> None:
        remote = await connect(service.ws_url, headers=bearer(token))
        await remote.client.open_table("quotes")
        await poll(lambda: remote.pump.done(), timeout=40, what="the session to be closed")
        assert remote.socket.close_code == 1008

    asyncio.run(scenario())
    wait_until(
        lambda: service.metric("livetables_websocket_disconnects_total", reason="expired") == 1,
        what="the expiry counted",
    )
