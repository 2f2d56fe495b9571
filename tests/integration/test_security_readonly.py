"""Real websocket clients: tables are read-only unless editable; sessions leave nothing behind."""

from __future__ import annotations

import asyncio

import perspective
import pytest

from service.remote import connect
from tests.helpers import json_bytes, produce, wait_until
from tests.security_helpers import poll

SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}


def _records(n: int):
    for i in range(n):
        key = f"k{i % 300}"
        yield (
            i % 2,
            key.encode(),
            json_bytes({"id": key, "sym": f"S{i % 7}", "px": i / 4, "qty": i}),
        )


@pytest.fixture
def tables(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=2)
    produce(kafka.bootstrap, topic_name, _records(2000))
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "quotes": {"topic": topic_name, "schema": SCHEMA, "index": "id"},
                "log": {"topic": topic_name, "schema": SCHEMA},
                "window": {"topic": topic_name, "schema": SCHEMA, "limit": 500},
                # Derived tables are read-only always.
                "by_sym": {"from": "log", "view": {"group_by": ["sym"], "columns": ["qty"]}},
                "scratch": {
                    "topic": topic_name,
                    "schema": SCHEMA,
                    "index": "id",
                    "editable": True,
                },
            },
        }
    )
    wait_until(service.ready, what="catch-up")
    assert service.size("log") == 2000
    return service


WRITES = ["update", "clear", "replace", "remove", "delete"]


async def _write(table, operation: str) -> None:
    if operation == "update":
        await table.update([{"id": "k1", "sym": "X", "px": -1.0, "qty": -1}])
    elif operation == "clear":
        await table.clear()
    elif operation == "replace":
        await table.replace([{"id": "zz", "sym": "X", "px": -1.0, "qty": -1}])
    elif operation == "remove":
        await table.remove(["k1", "k2"])
    elif operation == "delete":
        await table.delete()


def test_remote_writes_are_refused_and_tables_stay_byte_for_byte_intact(tables):
    service = tables
    read_only = ["quotes", "log", "window", "by_sym"]
    before = {name: _arrow(service, name) for name in read_only}

    async def scenario() -> dict[str, list[str]]:
        remote = await connect(service.ws_url)
        client = remote.client
        errors: dict[str, list[str]] = {}
        remote_before = {}
        for name in read_only:
            table = await client.open_table(name)
            view = await table.view()
            remote_before[name] = await view.to_arrow()
            for operation in WRITES:
                try:
                    await _write(table, operation)
                except perspective.PerspectiveError as exc:
                    errors.setdefault(name, []).append(str(exc))
            assert await view.to_arrow() == remote_before[name], f"{name} changed"
            await view.delete()
        for name, options in [("evil", {}), ("quotes", {"index": "id"})]:
            try:
                await client.table({"a": "integer"}, name=name, **options)
            except perspective.PerspectiveError as exc:
                errors.setdefault(f"new:{name}", []).append(str(exc))
        assert sorted(await client.get_hosted_table_names()) == sorted([*read_only, "scratch"])
        remote.close()
        return errors

    errors = asyncio.run(scenario())
    for name in read_only:
        assert len(errors[name]) == len(WRITES), errors[name]
        *writes, delete = errors[name]
        for message in writes:
            assert f"table {name!r} is read-only" in message, message
        assert f"table {name!r} is hosted by the server" in delete, delete
        assert _arrow(service, name) == before[name], f"{name} is not byte-for-byte intact"
    assert "cannot host a new table 'evil'" in errors["new:evil"][0]
    assert "cannot host a new table 'quotes'" in errors["new:quotes"][0]
    assert service.metric(
        "livetables_websocket_rejected_requests_total", reason="read_only"
    ) == len(read_only) * (len(WRITES) - 1)
    assert service.metric(
        "livetables_websocket_rejected_requests_total", reason="table_delete"
    ) == len(read_only)
    assert service.metric("livetables_websocket_rejected_requests_total", reason="make_table") == 2
    assert service.size("log") == 2000 and service.size("quotes") == 300


def test_an_editable_table_accepts_remote_writes_but_stays_hosted_and_fed(
    tables, kafka, topic_name
):
    service = tables

    async def scenario() -> None:
        remote = await connect(service.ws_url)
        scratch = await remote.client.open_table("scratch")
        await scratch.update([{"id": "new", "sym": "N", "px": 1.5, "qty": 1}])
        assert await scratch.size() == 301
        await scratch.remove(["new", "k0"])
        assert await scratch.size() == 299
        await scratch.replace([{"id": "only", "sym": "O", "px": 2.0, "qty": 2}])
        assert await scratch.size() == 1
        await scratch.clear()
        assert await scratch.size() == 0
        # Deleting it would leave ingestion feeding a table no one can see, and a table
        # re-created under its name would not be fed: both are refused.
        with pytest.raises(perspective.PerspectiveError, match="cannot delete tables"):
            await scratch.delete()
        with pytest.raises(perspective.PerspectiveError, match="cannot host a new table"):
            await remote.client.table(SCHEMA, name="scratch", index="id")
        assert "scratch" in await remote.client.get_hosted_table_names()
        await scratch.update([{"id": "back", "sym": "B", "px": 3.0, "qty": 3}])
        assert await scratch.size() == 1
        remote.close()

    asyncio.run(scenario())
    assert service.metric("livetables_websocket_rejected_requests_total", reason="read_only") == 0
    assert service.metric("livetables_websocket_rejected_requests_total", reason="table_delete")
    # Kafka still feeds the table clients see.
    produce(kafka.bootstrap, topic_name, ((0, b"k9999", json_bytes({"id": "k9999"})),))
    wait_until(lambda: "k9999" in service.columns("scratch")["id"], what="the record ingested")


def test_a_thousand_sessions_leave_no_session_and_no_view_behind(tables):
    """Each session opens views and a callback, then drops the connection without cleaning up."""
    service = tables
    cycles, workers = 1000, 8

    async def worker(count: int) -> None:
        for _ in range(count):
            remote = await connect(service.ws_url)
            table = await remote.client.open_table("quotes")
            flat = await table.view()
            await flat.on_update(lambda *_: None)
            grouped = await table.view(group_by=["sym"], columns=["qty"])
            assert await grouped.num_rows() == 8  # 7 symbols and the total
            remote.close()

    async def scenario() -> None:
        await asyncio.gather(*(worker(cycles // workers) for _ in range(workers)))

    asyncio.run(scenario())
    wait_until(lambda: service.metric("livetables_websocket_sessions") == 0, what="no sessions")
    wait_until(lambda: service.metric("livetables_websocket_views") == 0, what="no views")
    assert service.metric("livetables_websocket_disconnects_total", reason="client") == cycles
    # The engine agrees: a table with any view left on it refuses an immediate delete.
    service.service.host.tables["quotes"].delete()


async def _flood_views(url: str, limit: int) -> tuple[int, bool]:
    remote = await connect(url)
    table = await remote.client.open_table("quotes")
    made, refused = 0, False
    for _ in range(limit + 5):
        try:
            await table.view()
            made += 1
        except perspective.PerspectiveError as exc:
            assert "live views" in str(exc)
            refused = True
            break
    remote.close()
    return made, refused


def test_view_limit_and_persistent_offenders_are_closed(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=1)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "server": {"max_views_per_session": 5, "max_rejected_requests": 10},
            "tables": {"quotes": {"topic": topic_name, "schema": SCHEMA, "index": "id"}},
        }
    )
    wait_until(service.ready, what="ready")
    made, refused = asyncio.run(_flood_views(service.ws_url, 5))
    assert (made, refused) == (5, True)
    assert service.metric("livetables_websocket_rejected_requests_total", reason="too_many_views")

    async def offender() -> None:
        remote = await connect(service.ws_url)
        table = await remote.client.open_table("quotes")
        for _ in range(10):
            with pytest.raises(perspective.PerspectiveError):
                await table.clear()
        # The eleventh refusal closes the session.
        last = asyncio.ensure_future(table.clear())
        await poll(lambda: remote.pump.done(), what="the server closing the session")
        last.cancel()
        assert remote.socket.close_code == 1008

    asyncio.run(offender())
    wait_until(
        lambda: service.metric("livetables_websocket_disconnects_total", reason="rejected") == 1,
        what="the offender's disconnect counted",
    )
    assert service.get("/healthz")[0] == 200


def _arrow(service, name: str) -> bytes:
    view = service.service.host.tables[name].view()
    try:
        return view.to_arrow()
    finally:
        view.delete()
