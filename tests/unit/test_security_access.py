"""The web side's policy without Tornado: tokens, 401/403 answers, session caps, origins."""

from __future__ import annotations

import asyncio
import time

import pytest

from service import __version__
from service.config import AuthConfig
from service.metrics import Metrics
from service.security.access import AccessPolicy, Caller, Denied
from service.security.auth import ANONYMOUS, Authenticator, Principal
from service.security.origins import OriginPolicy
from service.security.slots import SessionSlots
from service.security.tokens import cookie_options, token_from

OPS = "ops-token-0123456789abcdef"
DESK = "desk-token-0123456789abcdef"
CALLER = Caller("GET", "/api/tables", "10.0.0.7")


def policy(enabled: bool = True, **slots: int) -> AccessPolicy:
    config = (
        AuthConfig(
            enabled=True,
            tokens={"ops": OPS, "desk": DESK},
            table_access={"secret": {"tokens": ["ops"]}},
        )
        if enabled
        else AuthConfig()
    )
    sessions = SessionSlots(slots.get("total", 100), slots.get("per_address", 100))
    return AccessPolicy(
        Authenticator(config),
        Metrics(__version__),
        OriginPolicy(["https://grafana.example.test"]),
        sessions,
    )


def counted(access: AccessPolicy, metric: str, reason: str) -> float:
    value = access.metrics.registry.get_sample_value(metric, {"reason": reason})
    return value or 0.0


def test_the_token_comes_from_the_header_then_the_query_then_the_cookie():
    assert token_from(f"Bearer {OPS}", "q", "c") == (OPS, "header")
    assert token_from(f"bearer  {OPS} ", None, None) == (OPS, "header")
    assert token_from(f"Basic {OPS}", "q", "c") == ("q", "query")
    assert token_from("Bearer ", None, "c") == ("c", "cookie")
    assert token_from("", None, None) == (None, "none")


def test_a_token_is_kept_as_a_cookie_only_if_it_can_be_one_and_no_longer_than_it_lives():
    principal = Principal("alice", "jwt", expires_at=time.time() + 600)
    options = cookie_options("abc.def-ghi", principal, https=True)
    assert options is not None
    assert options["httponly"] and options["samesite"] == "Lax" and options["secure"]
    assert 590 <= options["max_age"] <= 600
    assert "secure" not in (cookie_options("abc", ANONYMOUS, https=False) or {})
    assert cookie_options("abc; Path=/evil", principal, https=False) is None


def test_without_auth_everyone_is_anonymous_and_reads_everything():
    access = policy(enabled=False)
    assert asyncio.run(access.authenticate(None, CALLER)) is ANONYMOUS
    access.authorise(ANONYMOUS, ["secret"], CALLER)
    assert access.table_filter(ANONYMOUS) is None


@pytest.mark.parametrize(
    ("token", "reason", "challenge"),
    [
        (None, "missing", 'Bearer realm="livetables"'),
        ("not-a-token-we-know-of-0123", "invalid", 'Bearer realm="livetables", error='),
    ],
)
def test_a_missing_or_unknown_token_is_a_401_with_a_challenge(token, reason, challenge):
    access = policy()
    with pytest.raises(Denied) as denied:
        asyncio.run(access.authenticate(token, CALLER))
    assert denied.value.status == 401
    assert denied.value.headers["WWW-Authenticate"].startswith(challenge)
    assert counted(access, "livetables_auth_failures_total", reason) == 1


def test_a_table_the_principal_may_not_read_is_a_403_and_is_filtered_out():
    access = policy()
    desk = asyncio.run(access.authenticate(DESK, CALLER))
    ops = asyncio.run(access.authenticate(OPS, CALLER))
    access.authorise(ops, ["secret", "quotes"], CALLER)
    with pytest.raises(Denied) as denied:
        access.authorise(desk, ["quotes", "secret"], CALLER)
    assert denied.value.status == 403
    assert counted(access, "livetables_auth_failures_total", "forbidden") == 1
    visible = access.table_filter(desk)
    assert visible is not None and visible("quotes") and not visible("secret")
    assert access.may_read(ops, "secret") and not access.may_read(desk, "secret")


def test_sessions_past_a_cap_are_a_503_to_retry_and_slots_come_back():
    access = policy(total=3, per_address=2)
    access.open_session("10.0.0.1")
    access.open_session("10.0.0.1")
    with pytest.raises(Denied) as denied:
        access.open_session("10.0.0.1")
    assert denied.value.status == 503 and denied.value.headers == {"Retry-After": "10"}
    assert "max_websocket_sessions_per_address" in denied.value.text
    access.open_session("10.0.0.2")
    with pytest.raises(Denied) as denied:
        access.open_session("10.0.0.3")
    assert "server.max_websocket_sessions)" in denied.value.text
    assert counted(access, "livetables_websocket_rejected_requests_total", "sessions") == 1
    access.close_session("10.0.0.1")
    access.open_session("10.0.0.3")


def test_websocket_origins_other_than_ours_and_the_listed_ones_are_refused_and_counted():
    access = policy()
    assert access.origin_allowed("https://desk.example.test", "desk.example.test")
    assert access.origin_allowed("https://grafana.example.test:443", "desk.example.test")
    assert not access.origin_allowed("https://evil.example.test", "desk.example.test")
    assert counted(access, "livetables_websocket_rejected_requests_total", "origin") == 1
