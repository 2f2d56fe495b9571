"""A JSON string that is not UTF-8 is a counted bad record, and the table stays readable by a
remote Perspective client (before, such a record reached the table and every later read of it
failed in the client)."""

from __future__ import annotations

import asyncio
import logging

from service.remote import connect
from tests.helpers import json_bytes, produce, wait_until

SCHEMA = {"id": "string", "n": "integer"}
POISON = b'{"id": "\xff\xfe(", "n": 7}'


def test_invalid_utf8_is_counted_logged_and_the_table_stays_readable_remotely(
    kafka, topic_name, run_service, caplog
):
    kafka.create_topic(topic_name, partitions=1)
    good = [(0, f"r{i}".encode(), json_bytes({"id": f"r{i}", "n": i})) for i in range(20)]
    produce(kafka.bootstrap, topic_name, [*good[:10], (0, b"bad", POISON), *good[10:]])
    caplog.set_level(logging.WARNING, logger="service.ingest")
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "orders": {"topic": topic_name, "schema": SCHEMA},
                "latest": {"topic": topic_name, "schema": SCHEMA, "index": "id"},
            },
        }
    )
    wait_until(service.ready, what="catch-up")
    for table in ("orders", "latest"):
        assert (
            service.metric("livetables_decode_errors_total", table=table, reason="invalid_utf8")
            == 1
        )
    logged = [r.getMessage() for r in caplog.records if "invalid_utf8" in r.getMessage()]
    assert any(f"{topic_name}[0]@10" in line for line in logged), logged

    async def read(table_name: str) -> tuple[dict, str]:
        remote = await connect(service.ws_url)
        try:
            table = await remote.client.open_table(table_name)
            view = await table.view()
            columns = await view.to_columns()
            csv = await view.to_csv()
            await view.delete()
            return columns, csv
        finally:
            remote.close()

    for table_name in ("orders", "latest"):
        columns, csv = asyncio.run(asyncio.wait_for(read(table_name), 30))
        assert sorted(columns["n"]) == list(range(20)), table_name
        assert "r19" in csv
