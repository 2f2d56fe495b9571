"""The read-only guard, driven by a stock Perspective client against an in-process server."""

from __future__ import annotations

import random

import perspective
import pytest

from service.security import wire
from service.security.guard import GuardPolicy, SessionGuard
from service.security.messages import error_response
from service.security.protocol import KIND_NUMBERS
from tests.unit.guarded_client import GuardedClient


class Gauge:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, n: float = 1) -> None:
        self.value += n

    def dec(self, n: float = 1) -> None:
        self.value -= n


class Harness(GuardedClient):
    """A perspective server with two tables, one session behind a guard, and a client."""

    def __init__(self, can_read=None, **limits) -> None:
        server = perspective.Server()
        local = server.new_local_client()
        self.quotes = local.table({"sym": "string", "px": "float"}, name="quotes", index="sym")
        self.quotes.update([{"sym": "A", "px": 1.0}, {"sym": "B", "px": 2.0}])
        self.scratch = local.table({"x": "integer"}, name="scratch")
        self.gauge = Gauge()
        policy = GuardPolicy(
            frozenset({"quotes", "scratch", "secret"}), frozenset({"scratch"}), **limits
        )
        super().__init__(server, SessionGuard(policy, can_read=can_read, views_gauge=self.gauge))

    def contents(self) -> bytes:
        view = self.quotes.view()
        try:
            return view.to_arrow()
        finally:
            view.delete()


def test_reading_views_expressions_and_view_deletion_pass():
    h = Harness()

    async def scenario(client):
        assert sorted(await client.get_hosted_table_names()) == ["quotes", "scratch"]
        quotes = await client.open_table("quotes")
        assert await quotes.size() == 2
        assert await quotes.schema() == {"sym": "string", "px": "float"}
        await quotes.validate_expressions({"double": '"px" * 2'})
        view = await quotes.view(
            group_by=["sym"], columns=["px", "double"], expressions={"double": '"px" * 2'}
        )
        assert (await view.to_columns())["double"][0] == 6.0
        await view.to_arrow()
        await view.to_csv()
        await view.dimensions()
        await view.get_config()
        await view.delete()

    h.run(scenario)
    assert all(v.allowed for v in h.verdicts), [v.reason for v in h.verdicts]
    assert h.guard.views == {} and h.gauge.value == 0


@pytest.mark.parametrize(
    "operation",
    ["update", "clear", "replace", "remove", "delete", "new_table"],
)
def test_writes_to_a_read_only_table_are_refused_and_the_table_is_untouched(operation):
    h = Harness()
    before = h.contents()
    errors: list[str] = []

    async def scenario(client):
        quotes = await client.open_table("quotes")
        try:
            if operation == "update":
                await quotes.update([{"sym": "C", "px": 3.0}])
            elif operation == "clear":
                await quotes.clear()
            elif operation == "replace":
                await quotes.replace([{"sym": "Z", "px": 9.0}])
            elif operation == "remove":
                await quotes.remove(["A"])
            elif operation == "delete":
                await quotes.delete()
            else:
                await client.table({"y": "integer"}, name="mine")
        except perspective.PerspectiveError as exc:
            errors.append(str(exc))

    h.run(scenario)
    assert len(errors) == 1, f"{operation} was not refused"
    refused = [v for v in h.verdicts if not v.allowed]
    assert len(refused) == 1
    if operation == "new_table":
        assert refused[0].reason == "make_table" and "'mine'" in errors[0]
    elif operation == "delete":
        assert refused[0].reason == "table_delete"
        assert "cannot delete tables" in errors[0], errors[0]
    else:
        assert refused[0].reason == "read_only"
        assert "'quotes' is read-only" in errors[0], errors[0]
    assert h.contents() == before


def test_an_editable_table_takes_every_write_but_is_never_deleted_or_replaced():
    h = Harness()
    errors: list[str] = []

    async def scenario(client):
        scratch = await client.open_table("scratch")
        await scratch.update([{"x": 1}, {"x": 2}])
        await scratch.replace([{"x": 3}])
        assert await scratch.size() == 1
        await scratch.clear()
        assert await scratch.size() == 0
        # Deleting it would leave its Kafka feed pointing at nothing; so would hosting a
        # table of the same name. Both are refused, and the table goes on taking writes.
        for attempt in (scratch.delete(), client.table({"x": "integer"}, name="scratch")):
            try:
                await attempt
            except perspective.PerspectiveError as exc:
                errors.append(str(exc))
        await scratch.update([{"x": 5}])
        assert await scratch.size() == 1

    h.run(scenario)
    assert [v.reason for v in h.verdicts if not v.allowed] == ["table_delete", "make_table"]
    assert "'scratch'" in errors[0] and "'scratch'" in errors[1]


def test_views_are_limited_per_session_and_failed_views_do_not_count():
    h = Harness(max_views=2)
    errors: list[str] = []

    async def scenario(client):
        quotes = await client.open_table("quotes")
        first = await quotes.view()
        with pytest.raises(perspective.PerspectiveError):
            await quotes.view(expressions={"bad": "nonsense(("})  # the engine refuses it
        second = await quotes.view()
        try:
            await quotes.view()
        except perspective.PerspectiveError as exc:
            errors.append(str(exc))
        await first.delete()
        third = await quotes.view()
        await second.delete()
        await third.delete()

    h.run(scenario)
    assert len(errors) == 1 and "live views" in errors[0]
    assert [v.reason for v in h.verdicts if not v.allowed] == ["too_many_views"]
    assert h.guard.views == {} and h.gauge.value == 0


def test_views_of_other_sessions_and_unknown_tables_are_out_of_reach():
    h = Harness()
    other_view = h.quotes.view()  # another client's view: this session never made it
    frame = (
        wire.varint_field(1, 7)
        + wire.string_field(2, "some-other-view")
        + wire.bytes_field(KIND_NUMBERS["view_delete"], b"")
    )
    verdict = h.guard.check(frame)
    assert not verdict.allowed and verdict.reason == "unknown_view"
    assert verdict.response is not None and "some-other-view" in verdict.message
    frame = (
        wire.varint_field(1, 8)
        + wire.string_field(2, "nope")
        + wire.bytes_field(KIND_NUMBERS["table_size"], b"")
    )
    assert h.guard.check(frame).reason == "unknown_table"
    other_view.delete()


def test_frames_that_do_not_decode_are_refused_without_reaching_the_engine():
    h = Harness()
    size = KIND_NUMBERS["table_size"]
    cases = {
        b"": "malformed",
        b"\xff\xff\xff": "malformed",
        b"\x08": "malformed",  # truncated varint
        wire.varint_field(1, 3) + wire.string_field(2, "quotes"): "malformed",  # no request
        wire.varint_field(1, 3)
        + wire.bytes_field(size, b"")
        + wire.bytes_field(KIND_NUMBERS["table_delete"], b""): "malformed",  # two requests
        wire.varint_field(1, 3)
        + wire.varint_field(1, 4)
        + wire.bytes_field(size, b""): "malformed",
        wire.varint_field(1, 3) + wire.bytes_field(2, b"\xfe") + wire.bytes_field(size, b""): (
            "malformed"  # entity_id is not UTF-8
        ),
        wire.varint_field(1, 3) + wire.varint_field(size, 1): "malformed",  # wrong wire type
        wire.varint_field(1, 3) + wire.bytes_field(99, b""): "unknown_request",
        wire.varint_field(1, 1 << 40) + wire.bytes_field(size, b""): "malformed",
        wire.varint_field(1, 3) + b"\x0b\x0c": "malformed",  # a group
    }
    for frame, reason in cases.items():
        verdict = h.guard.check(frame)
        assert not verdict.allowed and verdict.reason == reason, (frame, verdict)


def test_oversized_requests_are_refused_with_an_answer_and_persistent_offenders_closed():
    h = Harness(max_request_bytes=1024, max_rejected=3)
    big = (
        wire.varint_field(1, 42)
        + wire.string_field(2, "quotes")
        + wire.bytes_field(KIND_NUMBERS["table_size"], b"\x00" * 2000)
    )
    verdict = h.guard.check(big)
    assert verdict.reason == "too_large" and "2" in verdict.message and not verdict.close
    head = next(wire.fields(verdict.response))
    assert head.number == 1 and head.value == 42
    closes = [h.guard.check(big).close for _ in range(3)]
    assert closes == [False, False, True]


def test_a_restricted_client_sees_and_reaches_only_its_tables():
    h = Harness(can_read=lambda table: table != "scratch")
    errors: list[str] = []

    async def scenario(client):
        assert await client.get_hosted_table_names() == ["quotes"]
        quotes = await client.open_table("quotes")
        assert await quotes.size() == 2
        try:
            await client.open_table("scratch")
        except perspective.PerspectiveError as exc:
            errors.append(str(exc))

    h.run(scenario)
    assert errors and "scratch" in errors[0]
    frame = (
        wire.varint_field(1, 5)
        + wire.string_field(2, "scratch")
        + wire.bytes_field(KIND_NUMBERS["table_size"], b"")
    )
    assert h.guard.check(frame).reason == "forbidden_table"


def test_error_responses_decode_as_perspective_responses():
    frame = error_response(0, "", "no")
    assert [f.number for f in wire.fields(frame)] == [50]
    frame = error_response(300, "quotes", "no")
    assert [f.number for f in wire.fields(frame)] == [1, 2, 50]


def test_varints_round_trip_and_malformed_ones_raise():
    rng = random.Random(1)
    for value in [0, 1, 127, 128, 300, (1 << 32) - 1, (1 << 64) - 1] + [
        rng.getrandbits(rng.randint(1, 64)) for _ in range(200)
    ]:
        encoded = wire.varint(value)
        assert wire.read_varint(encoded, 0) == (value, len(encoded))
    for bad in (b"\x80", b"\xff" * 11, b"\xff" * 9 + b"\x7f"):
        with pytest.raises(wire.WireError):
            wire.read_varint(bad, 0)


def _view_request(h: Harness, view_id: str, kind: str, body: bytes, msg_id: int = 9) -> object:
    frame = (
        wire.varint_field(1, msg_id)
        + wire.string_field(2, view_id)
        + wire.bytes_field(KIND_NUMBERS[kind], body)
    )
    return h.guard.handle(frame, h.session.handle_request)


def test_arguments_the_engine_would_crash_on_are_refused():
    """Each of these frames, as is, crashes or hangs perspective 4.3.0's engine."""
    h = Harness()
    views: dict[str, str] = {}

    async def scenario(client):
        quotes = await client.open_table("quotes")
        await quotes.view(columns=["px"])
        await quotes.view(group_by=["sym"])
        await quotes.view(group_by=["sym"], columns=[])
        views.update(zip(["flat", "grouped", "empty"], list(h.guard.views), strict=True))

    h.run(scenario)
    huge = 1 << 31
    assert _view_request(h, views["grouped"], "view_expand", wire.varint_field(1, huge)).reason == (
        "bad_argument"
    )
    assert _view_request(
        h, views["grouped"], "view_collapse", wire.varint_field(1, huge)
    ).reason == ("bad_argument")
    viewport = wire.bytes_field(1, wire.varint_field(2, huge))
    assert _view_request(h, views["flat"], "view_to_arrow", viewport).reason == "bad_argument"
    # Column ranges: checked against the view's width, asked of the engine.
    paths = "view_column_paths"
    assert _view_request(h, views["flat"], paths, wire.varint_field(1, 4)).reason == "bad_argument"
    both = wire.varint_field(1, 3) + wire.varint_field(2, 2)
    assert _view_request(h, views["flat"], paths, both).reason == "bad_argument"
    assert _view_request(h, views["empty"], paths, wire.varint_field(2, 5)).reason == "bad_argument"
    assert _view_request(h, views["flat"], paths, wire.varint_field(2, 5)).allowed
    assert _view_request(h, views["grouped"], paths, wire.varint_field(1, 1)).allowed
    # The guard's own msg_id is not for clients.
    assert _view_request(h, views["flat"], "view_schema", b"", msg_id=(1 << 32) - 1).reason == (
        "malformed"
    )


def test_a_refused_new_view_does_not_count():
    h = Harness(max_views=1)
    config = wire.varint_field(9, 1 << 31)  # ViewConfig.group_by_depth
    frame = (
        wire.varint_field(1, 5)
        + wire.string_field(2, "quotes")
        + wire.bytes_field(
            KIND_NUMBERS["table_make_view"], wire.string_field(1, "v") + wire.bytes_field(2, config)
        )
    )
    assert h.guard.check(frame).reason == "bad_argument"
    assert h.guard.views == {} and h.gauge.value == 0


def _make_view(config: bytes) -> bytes:
    body = wire.string_field(1, "v1") + wire.bytes_field(2, config)
    return (
        wire.varint_field(1, 3)
        + wire.string_field(2, "quotes")
        + wire.bytes_field(KIND_NUMBERS["table_make_view"], body)
    )


def test_bodies_are_checked_against_the_schema_all_the_way_down():
    h = Harness()
    # A comparison filter without its value: the engine crashes on it.
    no_value = wire.bytes_field(4, wire.string_field(1, "px") + wire.string_field(2, ">"))
    verdict = h.guard.check(_make_view(no_value))
    assert verdict.reason == "bad_argument" and "'px'" in verdict.message
    # "is null" needs none.
    is_null = wire.bytes_field(4, wire.string_field(1, "px") + wire.string_field(2, "is null"))
    assert h.guard.check(_make_view(is_null)).allowed
    # Deep inside, a string that is not UTF-8, a wrong wire type, an unknown field: the
    # engine would stop parsing there and act on half a request.
    for config in (
        wire.bytes_field(4, wire.bytes_field(1, b"\xff") + wire.string_field(2, "is null")),
        wire.bytes_field(4, wire.string_field(1, "px") + wire.varint_field(3, 1)),
        wire.bytes_field(3, wire.bytes_field(2, wire.varint_field(1, 5))),
        wire.varint_field(11, 1),
    ):
        verdict = h.guard.check(_make_view(config))
        assert verdict.reason == "malformed" and "table_make_view" in verdict.message, config
