"""A stock Perspective Python client over /websocket reads the hosted tables."""

from __future__ import annotations

import asyncio

from service.remote import connect
from tests.helpers import json_bytes, produce, wait_until

SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}


def test_remote_client_reads_table_contents_and_updates(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=2)
    produce(
        kafka.bootstrap,
        topic_name,
        (
            (
                i % 2,
                f"k{i}".encode(),
                json_bytes({"id": f"k{i}", "sym": "S", "px": i / 2, "qty": i}),
            )
            for i in range(200)
        ),
    )
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {"quotes": {"topic": topic_name, "schema": SCHEMA, "index": "id"}},
        }
    )
    wait_until(service.ready, what="catch-up")

    async def scenario() -> None:
        remote = await connect(service.ws_url)
        client = remote.client
        assert "quotes" in await client.get_hosted_table_names()
        table = await client.open_table("quotes")
        assert await table.schema() == SCHEMA
        view = await table.view(group_by=["sym"], columns=["qty"], aggregates={"qty": "sum"})
        totals = await view.to_columns()
        assert totals["qty"][0] == sum(range(200))
        flat = await table.view()
        assert await flat.num_rows() == 200
        # Live: a tombstone produced now disappears from the remote view.
        await asyncio.get_running_loop().run_in_executor(
            None, produce, kafka.bootstrap, topic_name, [(0, b"k0", None)]
        )
        for _ in range(200):
            if await flat.num_rows() == 199:
                break
            await asyncio.sleep(0.05)
        assert await flat.num_rows() == 199
        await flat.delete()
        await view.delete()
        remote.close()

    asyncio.run(scenario())
    wait_until(lambda: service.metric("livetables_websocket_sessions") == 0, what="session closed")
    assert service.metric("livetables_websocket_bytes_sent_total") > 0
