"""View ids belong to the server: sessions cannot collide on, name or delete each other's views."""

from __future__ import annotations

import asyncio

import perspective

from service.remote import connect
from service.security import wire
from service.security.protocol import KIND_NUMBERS
from tests.helpers import json_bytes, produce, wait_until
from tests.security_helpers import ServiceProcess, open_socket, poll

SCHEMA = {"id": "string", "sym": "string", "px": "float"}


def _records(n: int):
    for i in range(n):
        key = f"k{i % 50}"
        yield (0, key.encode(), json_bytes({"id": key, "sym": f"S{i % 5}", "px": i / 4}))


def _request(msg_id: int, entity_id: str, kind: str, body: bytes = b"") -> bytes:
    return (
        wire.varint_field(1, msg_id)
        + wire.string_field(2, entity_id)
        + wire.bytes_field(KIND_NUMBERS[kind], body)
    )


def _make_view(msg_id: int, table: str, view_id: str) -> bytes:
    return _request(msg_id, table, "table_make_view", wire.string_field(1, view_id))


def _response(frame: bytes) -> tuple[int, int]:
    """(msg_id, field number of the response kind): 50 is a ServerError."""
    msg_id = kind = 0
    for field in wire.fields(frame):
        if field.number == 1:
            msg_id = field.value
        elif field.number > 2:
            kind = field.number
    return msg_id, kind


async def _answer(socket, msg_id: int) -> tuple[int, bytes]:
    """The kind and frame of the response to ``msg_id`` (skipping anything else)."""
    while True:
        frame = await asyncio.wait_for(socket.read_message(), 30)
        assert frame is not None, "the session closed"
        got, kind = _response(frame)
        if got == msg_id:
            return kind, frame


def test_two_sessions_choosing_the_same_view_id_then_closing_leave_the_process_alive(
    kafka, topic_name, tmp_path
):
    """The exact sequence that aborted the process (PerspectiveViewNotFoundException)."""
    kafka.create_topic(topic_name, partitions=1)
    produce(kafka.bootstrap, topic_name, _records(200))
    service = ServiceProcess(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {"quotes": {"topic": topic_name, "schema": SCHEMA, "index": "id"}},
        },
        tmp_path,
    )
    service.start()
    try:
        wait_until(service.ready, what="catch-up")

        async def scenario() -> None:
            first = await open_socket(service.ws_url)
            second = await open_socket(service.ws_url)
            for socket in (first, second):
                socket.write_message(_make_view(1, "quotes", "dup"), binary=True)
                kind, _ = await _answer(socket, 1)
                assert kind == KIND_NUMBERS["table_make_view"], "the view was not made"
            # Each session still reads its own view under the name it chose.
            for socket in (first, second):
                socket.write_message(_request(2, "dup", "view_dimensions"), binary=True)
                kind, _ = await _answer(socket, 2)
                assert kind == KIND_NUMBERS["view_dimensions"]
            first.close()
            await poll(
                lambda: service.metric("livetables_websocket_sessions") == 1,
                what="the first session closed",
            )
            second.close()
            await poll(
                lambda: not service.alive() or service.metric("livetables_websocket_sessions") == 0,
                what="the second session closed",
            )

        asyncio.run(scenario())
        assert service.alive(), service.output()
        assert service.get("/healthz")[0] == 200
        wait_until(lambda: service.metric("livetables_websocket_views") == 0, what="no views")
    finally:
        service.stop()


def test_a_session_cannot_reach_another_sessions_view_even_knowing_its_id(
    kafka, topic_name, run_service
):
    kafka.create_topic(topic_name, partitions=1)
    produce(kafka.bootstrap, topic_name, _records(200))
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {"quotes": {"topic": topic_name, "schema": SCHEMA, "index": "id"}},
        }
    )
    wait_until(service.ready, what="catch-up")

    async def scenario() -> None:
        owner = await connect(service.ws_url)
        table = await owner.client.open_table("quotes")
        view = await table.view(group_by=["sym"])
        assert await view.num_rows() == 6
        (guard,) = [s.guard for s in service.service.sessions]
        (client_id,) = guard.views
        intruder = await open_socket(service.ws_url)
        # Naming a view of its own after the owner's, then deleting it, deletes its own.
        intruder.write_message(_make_view(1, "quotes", client_id), binary=True)
        assert (await _answer(intruder, 1))[0] == KIND_NUMBERS["table_make_view"]
        intruder.write_message(_request(2, client_id, "view_delete"), binary=True)
        assert (await _answer(intruder, 2))[0] == KIND_NUMBERS["view_delete"]
        assert await view.num_rows() == 6
        # Neither the owner's name for its view nor the engine's reaches it from elsewhere.
        server_id = guard.views[client_id].server_id
        assert server_id != client_id
        for msg_id, name in enumerate((client_id, server_id), start=3):
            for kind in ("view_delete", "view_to_columns_string", "view_on_update"):
                intruder.write_message(_request(msg_id, name, kind), binary=True)
                answer, frame = await _answer(intruder, msg_id)
                assert answer == 50, f"{kind} on {name!r} was not refused"
                assert b"no view" in frame
        # The owner's view is untouched and still live.
        assert await view.num_rows() == 6
        assert (await view.to_columns())["__ROW_PATH__"][1:] == [[f"S{i}"] for i in range(5)]
        await view.delete()
        intruder.close()
        owner.close()

    asyncio.run(scenario())
    assert (
        service.metric("livetables_websocket_rejected_requests_total", reason="unknown_view") == 6
    )
    wait_until(lambda: service.metric("livetables_websocket_views") == 0, what="no views")
    assert isinstance(service.service.host.tables["quotes"], perspective.Table)
