"""Authentication: static tokens, JWTs against a JWKS, per-table access, origins, redaction."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from service.config import AuthConfig, ConfigError, parse_config
from service.security.auth import Authenticator, AuthError
from service.security.origins import OriginPolicy, normalise_origin
from service.security.tokens import redact

ISSUER = "https://idp.example.test/realms/desk"
AUDIENCE = "livetables"
GRAFANA = "grafana-token-0123456789abcdef"


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = rsa_key()
OTHER_KEY = rsa_key()


def jwk(private, kid: str) -> dict:
    data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return {**data, "kid": kid, "use": "sig", "alg": "RS256"}


def make_token(private=KEY, kid="k1", algorithm="RS256", **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, private, algorithm=algorithm, headers={"kid": kid})


class FakeJwks:
    def __init__(self, *keys: dict) -> None:
        self.document = {"keys": list(keys)}
        self.fetches = 0

    async def __call__(self, url: str) -> bytes:
        self.fetches += 1
        return json.dumps(self.document).encode()


def authenticator(jwks: FakeJwks | None = None, **extra) -> Authenticator:
    config = AuthConfig(
        enabled=True,
        tokens={"grafana": GRAFANA},
        oidc={"jwks_url": "https://idp.example.test/certs", "issuer": ISSUER, "audience": AUDIENCE},
        **extra,
    )
    return Authenticator(config, fetch=jwks or FakeJwks(jwk(KEY, "k1")))


def authenticate(auth: Authenticator, token: str | None):
    return asyncio.run(auth.authenticate(token))


def test_static_tokens_and_good_jwts_are_accepted():
    auth = authenticator()
    principal = authenticate(auth, GRAFANA)
    assert (principal.kind, principal.name) == ("token", "grafana")
    principal = authenticate(auth, make_token())
    assert (principal.kind, principal.name) == ("jwt", "alice")
    assert principal.expires_at is not None and principal.expires_at > time.time()


# Tokens are made when the test runs, not when it is collected: a suite that runs longer
# than a token's lifetime would otherwise see every one of them expired.
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: None, "missing"),
        (lambda: "", "missing"),
        (lambda: "not-a-token-at-all-but-long", "invalid"),
        (lambda: GRAFANA + "x", "invalid"),
        (lambda: make_token(exp=int(time.time()) - 3600), "expired"),
        (lambda: make_token(iss="https://evil.example.test/"), "issuer"),
        (lambda: make_token(aud="someone-else"), "audience"),
        (lambda: make_token(exp=None), "invalid"),  # exp is required
        (lambda: make_token(private=OTHER_KEY), "invalid"),  # a key the JWKS does not have
        (lambda: make_token(kid="unknown"), "invalid"),
        (
            lambda: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "exp": 2**40}, key=None, algorithm="none"
            ),
            "invalid",
        ),
    ],
    ids=[
        "none",
        "empty",
        "garbage",
        "wrong-static",
        "expired",
        "issuer",
        "audience",
        "no-exp",
        "other-key",
        "unknown-kid",
        "alg-none",
    ],
)
def test_bad_tokens_are_refused_with_a_reason(make, reason):
    with pytest.raises(AuthError) as caught:
        authenticate(authenticator(), make())
    assert caught.value.reason == reason


def test_an_hmac_token_signed_with_the_public_key_is_refused():
    from cryptography.hazmat.primitives import serialization

    public_pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    segments = [
        jwt.utils.base64url_encode(json.dumps(header).encode()),
        jwt.utils.base64url_encode(
            json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**40}).encode()
        ),
    ]
    import hashlib
    import hmac

    signing_input = b".".join(segments)
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()
    with pytest.raises(AuthError) as caught:
        authenticate(authenticator(), forged)
    assert caught.value.reason == "invalid"


def test_unknown_key_ids_refetch_the_jwks_at_most_once_per_interval():
    jwks = FakeJwks(jwk(KEY, "k1"))
    auth = authenticator(jwks)
    authenticate(auth, make_token())
    assert jwks.fetches == 1
    for i in range(20):
        with pytest.raises(AuthError):
            authenticate(auth, make_token(kid=f"made-up-{i}"))
    assert jwks.fetches == 1, "made-up key ids must not each trigger a fetch"


def test_a_rotated_key_is_picked_up():
    jwks = FakeJwks(jwk(KEY, "k1"))
    auth = authenticator(jwks)
    authenticate(auth, make_token())
    jwks.document["keys"].append(jwk(OTHER_KEY, "k2"))
    auth.jwks._fetched_at -= 60  # past the refetch interval
    assert authenticate(auth, make_token(private=OTHER_KEY, kid="k2")).name == "alice"


def test_table_access_by_token_name_or_claim_value():
    auth = authenticator(
        table_access={
            "trades": {"tokens": ["grafana"], "claims": {"groups": ["traders"]}},
            "quotes": {"claims": {"desk": ["fx"]}},
        }
    )
    grafana = authenticate(auth, GRAFANA)
    trader = authenticate(auth, make_token(groups=["ops", "traders"]))
    fx = authenticate(auth, make_token(desk="fx"))
    assert auth.can_read(grafana, "trades") and not auth.can_read(grafana, "quotes")
    assert auth.can_read(trader, "trades") and not auth.can_read(trader, "quotes")
    assert auth.can_read(fx, "quotes") and not auth.can_read(fx, "trades")
    assert all(auth.can_read(p, "other") for p in (grafana, trader, fx)), "unlisted: open"


def test_auth_config_fails_closed():
    base = {"tables": {"t": {"topic": "a", "schema": {"x": "string"}}}}
    with pytest.raises(ConfigError, match="no tokens"):
        parse_config({**base, "auth": {"enabled": True}})
    with pytest.raises(ConfigError, match=r"auth\.enabled is false"):
        parse_config({**base, "auth": {"tokens": {"a": GRAFANA}}})
    with pytest.raises(ConfigError, match="shorter than 16"):
        parse_config({**base, "auth": {"enabled": True, "tokens": {"a": "short"}}})
    with pytest.raises(ConfigError, match=r"auth\.table_access\.nope"):
        parse_config(
            {
                **base,
                "auth": {"enabled": True, "tokens": {"a": GRAFANA}, "table_access": {"nope": {}}},
            }
        )
    with pytest.raises(ConfigError, match="unsupported algorithm"):
        parse_config(
            {
                **base,
                "auth": {
                    "enabled": True,
                    "oidc": {
                        "jwks_url": "https://x/certs",
                        "issuer": ISSUER,
                        "audience": AUDIENCE,
                        "algorithms": ["HS256"],
                    },
                },
            }
        )


def test_tokens_come_from_the_environment_and_a_file(tmp_path, monkeypatch):
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text("batch: batch-token-0123456789abcdef\n")
    monkeypatch.setenv("LIVETABLES_AUTH__ENABLED", "true")
    monkeypatch.setenv("LIVETABLES_AUTH__TOKENS__GRAFANA", GRAFANA)
    monkeypatch.setenv("LIVETABLES_AUTH__TOKENS_FILE", str(tokens_file))
    config = parse_config({"tables": {"t": {"topic": "a", "schema": {"x": "string"}}}})
    assert config.auth.static_tokens() == {
        "grafana": GRAFANA,
        "batch": "batch-token-0123456789abcdef",
    }
    assert GRAFANA not in repr(config), "tokens must not show in reprs or logs"


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", [], True),
        ("https://desk.example.com", "desk.example.com", [], True),
        ("https://desk.example.com:443", "desk.example.com", [], True),
        ("https://evil.example.net", "desk.example.com", [], False),
        ("null", "desk.example.com", [], False),
        ("https://grafana.example.com", "desk.example.com", ["https://grafana.example.com"], True),
        ("https://GRAFANA.example.com:443", "desk", ["https://grafana.example.com/"], True),
        ("http://grafana.example.com", "desk", ["https://grafana.example.com"], False),
        ("https://anything.example.org", "desk", ["*"], True),
    ],
)
def test_websocket_origins(origin, host, allowed, expected):
    assert OriginPolicy(allowed).allows(origin, host) is expected


def test_origins_normalise_and_tokens_are_redacted_from_logs():
    assert normalise_origin("HTTPS://Example.COM:443/path") == "https://example.com"
    assert normalise_origin("http://[::1]:8080") == "http://[::1]:8080"
    assert normalise_origin("javascript:alert(1)") is None
    line = "GET /tables/q?mode=server&token=s3cr3t-value (127.0.0.1)"
    assert redact(line) == "GET /tables/q?mode=server&token=*** (127.0.0.1)"
    assert redact("GET /websocket?token=abc") == "GET /websocket?token=***"
