"""Retention against a real broker: rows past the window leave, exactly, and the rest stay."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

from tests.helpers import json_bytes, produce, wait_until
from tests.integration.test_replication import Replica

SCHEMA = {"id": "string", "sym": "string", "px": "float"}
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ids(service, table: str) -> set[str]:
    return set(service.columns(table)["id"])


def _records(prefix: str, count: int, syms: str = "AB"):
    return [
        (0, None, json_bytes({"id": f"{prefix}{i}", "sym": syms[i % len(syms)], "px": i / 4}))
        for i in range(count)
    ]


class Replicas:
    """Python stand-ins for replicated browsers of some tables, on a loop of their own."""

    def __init__(self, port: int, names: list[str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.replicas = {name: Replica() for name in names}
        self.futures = [
            asyncio.run_coroutine_threadsafe(
                replica.run(f"ws://127.0.0.1:{port}/replicate/{name}", self.stop), self.loop
            )
            for name, replica in self.replicas.items()
        ]
        wait_until(lambda: all(r.table is not None for r in self.replicas.values()), what="snaps")

    def ids(self, name: str) -> set[str]:
        view = self.replicas[name].table.view()
        try:
            return set(view.to_columns()["id"])
        finally:
            view.delete()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        for future in self.futures:
            future.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_rows_older_than_the_window_leave_by_record_timestamp(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=1)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "recent": {"topic": topic_name, "schema": SCHEMA, "retention": "10m"},
                "brief": {"topic": topic_name, "schema": SCHEMA, "retention": "2s"},
                "by_sym": {"from": "recent", "view": {"group_by": ["sym"], "columns": ["id"]}},
            },
        }
    )
    wait_until(service.ready, what="ready")
    replicas = Replicas(service.service.port, ["recent", "brief"])
    try:
        now = _now_ms()
        produce(kafka.bootstrap, topic_name, _records("old", 300, "ABC"), now - HOUR_MS)
        produce(kafka.bootstrap, topic_name, _records("new", 200, "AB"), now - MINUTE_MS)
        kept = {f"new{i}" for i in range(200)}
        wait_until(lambda: _ids(service, "recent") == kept, what="only the rows in the window")
        assert service.metric("livetables_rows_expired_total", table="recent") == 300
        # The removals reached the replicas like any other removal.
        wait_until(lambda: replicas.ids("recent") == kept, what="the replica equal")
        # ... and the derived table: group C had only old rows and is gone.
        wait_until(
            lambda: service.columns("by_sym") == {"sym": ["A", "B"], "id": [100, 100]},
            what="the derived table over the window",
        )
        # A short window: every row ages out while the test watches.
        wait_until(lambda: service.size("brief") == 0, what="every row of brief aged out")
        wait_until(lambda: replicas.ids("brief") == set(), what="the brief replica empty")
        assert _ids(service, "recent") == kept
        _, tables = service.get("/api/tables")
        recent = next(t for t in tables if t["name"] == "recent")
        assert recent["retention"] == "10m" and recent["retention_column"] is None
        assert set(recent["schema"]) == set(SCHEMA)  # the internal row numbers are not shown
    finally:
        replicas.close()


def test_indexed_rows_age_from_their_last_upsert_by_a_column(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=2)
    schema = {"id": "string", "px": "float", "ts": "datetime"}

    def at(offset: timedelta) -> int:
        return int((datetime.now(UTC) + offset).timestamp() * 1000)  # epoch milliseconds

    def upserts(ids, offset):
        return [
            (int(i) % 2, str(i).encode(), json_bytes({"id": str(i), "px": 1.0, "ts": at(offset)}))
            for i in ids
        ]

    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "quotes": {
                    "topic": topic_name,
                    "schema": schema,
                    "index": "id",
                    "retention": "10m",
                    "retention_column": "ts",
                }
            },
        }
    )
    wait_until(service.ready, what="ready")
    old, fresh = timedelta(hours=-1), timedelta(minutes=-1)
    first = upserts(range(0, 100), old) + upserts(range(100, 200), fresh)
    produce(kafka.bootstrap, topic_name, first)
    produce(
        kafka.bootstrap,
        topic_name,
        upserts(range(0, 20), fresh)  # back, fresh
        + upserts(range(100, 110), old)  # refreshed with an old time: they go
        + [(int(i) % 2, str(i).encode(), None) for i in range(110, 120)]  # deleted
        + [(0, b"nul", json_bytes({"id": "nul", "px": 2.0}))],  # no time: ages from now
    )
    expected = {str(i) for i in [*range(0, 20), *range(120, 200)]} | {"nul"}
    wait_until(lambda: _ids(service, "quotes") == expected, what="the rows in the window")
    assert service.metric("livetables_rows_expired_total", table="quotes") >= 90


def test_retention_and_limit_together_on_an_append_table(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=1)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "t": {"topic": topic_name, "schema": SCHEMA, "limit": 100, "retention": "10m"}
            },
        }
    )
    wait_until(service.ready, what="ready")
    replicas = Replicas(service.service.port, ["t"])
    try:
        now = _now_ms()
        produce(kafka.bootstrap, topic_name, _records("a", 250), now - MINUTE_MS)
        wait_until(
            lambda: _ids(service, "t") == {f"a{i}" for i in range(150, 250)},
            what="the last 100 rows",
        )
        produce(kafka.bootstrap, topic_name, _records("old", 30), now - HOUR_MS)
        expected = {f"a{i}" for i in range(180, 250)}  # the old ones pushed 30 out, then left
        wait_until(lambda: _ids(service, "t") == expected, what="the limit, less the old rows")
        wait_until(lambda: replicas.ids("t") == expected, what="the replica equal")
        assert service.metric("livetables_rows_expired_total", table="t") == 30
        assert service.size("t") == 70
    finally:
        replicas.close()
