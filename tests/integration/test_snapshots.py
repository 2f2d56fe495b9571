"""Restarts from table snapshots, against the real broker.

Each test runs the service, stops it (the last snapshot is written at shutdown),
changes the topic and/or the snapshot, starts it again, and checks two things:
how the table started (``livetables_table_start``; for a snapshot start, that
only the tail of the log was read), and that the table holds exactly what a full
replay would: the fold of the topic for indexed tables, every record once for
append tables, the last ``limit`` records for rolling windows.
"""

from __future__ import annotations

import random

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from service.metrics import START_KINDS
from service.snapshots import files
from tests.helpers import json_bytes, produce, wait_until

QUOTES = {"sym": "string", "px": "float", "n": "integer"}
TRADES = {"id": "string", "n": "integer"}
PARTITIONS = 3
LIMIT = 40


def _config(kafka, snapshot_dir, quotes_topic, trades_topic, **quotes_extra) -> dict:
    return {
        "kafka": {"bootstrap_servers": kafka.bootstrap},
        "snapshots": {"dir": str(snapshot_dir), "interval": "1h"},  # only at shutdown here
        "tables": {
            "quotes": {"topic": quotes_topic, "schema": QUOTES, "index": "sym", **quotes_extra},
            "trades": {"topic": trades_topic, "schema": TRADES},
            "recent": {"topic": trades_topic, "schema": TRADES, "limit": LIMIT},
        },
    }


class Stream:
    """Records produced to the two topics, and what each table must hold after them."""

    def __init__(self, kafka, quotes_topic: str, trades_topic: str) -> None:
        self.kafka, self.quotes_topic, self.trades_topic = kafka, quotes_topic, trades_topic
        self.rng = random.Random(11)
        self.quotes: dict[str, dict] = {}  # the fold
        self.trades: list[str] = []  # every id, in produced order per partition
        self.serial = 0

    def quotes_batch(self, keys: list[str], delete_share: float) -> int:
        records = []
        for key in keys:
            partition = int(key[1:]) % PARTITIONS
            if key in self.quotes and self.rng.random() < delete_share:
                records.append((partition, key.encode(), None))
                del self.quotes[key]
            else:
                self.serial += 1
                row = {"sym": key, "px": self.serial / 4, "n": self.serial}
                records.append((partition, key.encode(), json_bytes(row)))
                self.quotes[key] = row
        return produce(self.kafka.bootstrap, self.quotes_topic, records)

    def trades_batch(self, count: int) -> int:
        # One partition, so "the last LIMIT records" has one order to check.
        ids = [f"t{len(self.trades) + i}" for i in range(count)]
        self.trades += ids
        return produce(
            self.kafka.bootstrap,
            self.trades_topic,
            ((0, None, json_bytes({"id": i, "n": int(i[1:])})) for i in ids),
        )

    def check(self, service) -> None:
        quotes = service.columns("quotes")
        got = {
            quotes["sym"][i]: {c: quotes[c][i] for c in QUOTES} for i in range(len(quotes["sym"]))
        }
        assert got == self.quotes
        trades = service.columns("trades")["id"]
        assert sorted(trades) == sorted(self.trades)  # every record, once
        assert service.columns("recent")["id"] == self.trades[-LIMIT:]

    def applied(self, service) -> bool:
        """Every table holds what it should (each table has a consumer of its own)."""
        try:
            self.check(service)
        except AssertionError:
            return False
        return True


def _topics(kafka, topic_name: str) -> tuple[str, str]:
    quotes, trades = f"{topic_name}-q", f"{topic_name}-t"
    kafka.create_topic(quotes, partitions=PARTITIONS)
    kafka.create_topic(trades, partitions=1)
    return quotes, trades


def _consumed(service, table: str) -> float:
    return service.metric("livetables_records_consumed_total", table=table)


def _started(service, table: str) -> str:
    kinds = [
        kind
        for kind in START_KINDS
        if service.metric("livetables_table_start", table=table, kind=kind) == 1
    ]
    return kinds[0] if len(kinds) == 1 else repr(kinds)


def _first_run(kafka, run_service, config, stream: Stream) -> None:
    keys = [f"k{i}" for i in range(200)]
    sent = stream.quotes_batch(keys, 0) + stream.quotes_batch(keys[::3], 0.5)
    trades = stream.trades_batch(300)
    service = run_service(config)
    wait_until(service.ready, what="first catch-up")
    wait_until(lambda: _consumed(service, "quotes") == sent, what="quotes consumed")
    assert _consumed(service, "trades") == trades
    for table in ("quotes", "trades", "recent"):
        assert _started(service, table) == "replay"
    stream.check(service)
    service.stop()


def _snapshotted(kafka, topic_name: str, run_service, tmp_path) -> tuple[dict, Stream]:
    """Two topics, a first run that replays them and writes the first snapshots at stop."""
    quotes_topic, trades_topic = _topics(kafka, topic_name)
    config = _config(kafka, tmp_path, quotes_topic, trades_topic)
    stream = Stream(kafka, quotes_topic, trades_topic)
    _first_run(kafka, run_service, config, stream)
    return config, stream


def _second_batch(stream: Stream) -> tuple[int, int]:
    """After the snapshot: deletes of live keys, re-creates of deleted ones, new keys."""
    alive = sorted(stream.quotes)
    deleted = [f"k{i}" for i in range(200) if f"k{i}" not in stream.quotes]
    assert deleted, "the first run deletes some keys"
    sent = stream.quotes_batch(alive[:40], 1.0)  # tombstones
    sent += stream.quotes_batch(deleted, 0)  # re-created
    sent += stream.quotes_batch([f"k{i}" for i in range(200, 230)] + alive[40:60], 0)
    return sent, stream.trades_batch(25)


def test_a_restart_loads_the_snapshot_and_reads_only_the_tail(
    kafka, topic_name, run_service, tmp_path
):
    config, stream = _snapshotted(kafka, topic_name, run_service, tmp_path)
    for table in ("quotes", "trades", "recent"):
        assert len(files.candidates(tmp_path, table)) == 1, table

    tail_quotes, tail_trades = _second_batch(stream)
    service = run_service(config)
    wait_until(service.ready, what="catch-up after the snapshot")
    for table in ("quotes", "trades", "recent"):
        assert _started(service, table) == "snapshot", table
    wait_until(lambda: _consumed(service, "quotes") == tail_quotes, what="the tail consumed")
    assert _consumed(service, "trades") == tail_trades  # the tail only: no replay
    stream.check(service)
    assert service.metric("livetables_snapshot_restore_seconds", table="quotes") > 0

    # Live records after the restore land as usual, and the next snapshot holds them.
    stream.quotes_batch(["k1", "k2", "k300"], 0.5)
    stream.trades_batch(3)
    wait_until(lambda: stream.applied(service), what="live records applied")
    assert _consumed(service, "trades") == tail_trades + 3
    service.stop()
    assert service.metric("livetables_snapshots_total", table="quotes", outcome="written") == 1
    again = run_service(config)
    wait_until(again.ready, what="second restore")
    assert _started(again, "quotes") == "snapshot" and _consumed(again, "quotes") == 0
    stream.check(again)
    for table in ("quotes", "trades", "recent"):
        assert again.metric("livetables_snapshot_age_seconds", table=table) >= 0


def test_a_changed_table_config_replays_the_table(kafka, topic_name, run_service, tmp_path):
    _unchanged, stream = _snapshotted(kafka, topic_name, run_service, tmp_path)
    tail_quotes, _ = _second_batch(stream)
    changed = _config(
        kafka, tmp_path, stream.quotes_topic, stream.trades_topic, max_record_bytes=65536
    )
    service = run_service(changed)
    wait_until(service.ready, what="replay")
    assert _started(service, "quotes") == "fallback:config_changed"
    assert _started(service, "trades") == "snapshot"  # the unchanged tables still load
    assert _consumed(service, "quotes") > tail_quotes  # replayed from the start
    stream.check(service)


def _damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) * 2 // 3 :]
    path.write_bytes(bytes(data))


def test_a_corrupt_or_truncated_snapshot_replays_the_table(
    kafka, topic_name, run_service, tmp_path
):
    config, stream = _snapshotted(kafka, topic_name, run_service, tmp_path)
    _damage(files.candidates(tmp_path, "quotes")[0], "flip")
    _damage(files.candidates(tmp_path, "trades")[0], "truncate")
    _second_batch(stream)
    service = run_service(config)
    wait_until(service.ready, what="replay")
    assert _started(service, "quotes") == "fallback:corrupt"
    assert _started(service, "trades") == "fallback:corrupt"
    assert _started(service, "recent") == "snapshot"
    stream.check(service)


def test_a_damaged_newest_snapshot_falls_back_to_the_one_before(
    kafka, topic_name, run_service, tmp_path
):
    config, stream = _snapshotted(kafka, topic_name, run_service, tmp_path)
    tail_quotes, _ = _second_batch(stream)
    service = run_service(config)  # loads snapshot 1, writes snapshot 2 at stop
    wait_until(service.ready, what="first restore")
    wait_until(lambda: stream.applied(service), what="the tail applied")
    service.stop()
    newest, _older = files.candidates(tmp_path, "quotes")
    _damage(newest, "flip")
    stream.quotes_batch(["k5", "k6"], 0)
    again = run_service(config)
    wait_until(again.ready, what="restore from the older snapshot")
    assert _started(again, "quotes") == "snapshot"
    assert _consumed(again, "quotes") == tail_quotes + 2  # read on from the older offsets
    stream.check(again)


def test_offsets_deleted_by_retention_replay_by_the_start_policy(
    kafka, topic_name, run_service, tmp_path
):
    config, stream = _snapshotted(kafka, topic_name, run_service, tmp_path)
    stream.trades_batch(100)
    # Retention removes the first records past the snapshot's offset (300): the records
    # between are gone, so the snapshot cannot be continued.
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    futures = admin.delete_records([TopicPartition(stream.trades_topic, 0, 350)])
    for future in futures.values():
        future.result(timeout=30)
    service = run_service(config)
    wait_until(service.ready, what="replay after retention")
    assert _started(service, "trades") == "fallback:retention"
    assert _started(service, "recent") == "fallback:retention"
    assert _started(service, "quotes") == "snapshot"
    ids = service.columns("trades")["id"]
    assert sorted(ids, key=lambda i: int(i[1:])) == stream.trades[350:]  # what the topic holds
    assert service.columns("recent")["id"] == stream.trades[-LIMIT:]
