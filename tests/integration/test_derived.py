"""Derived tables against a real broker: rows equal the aggregate computed from the records."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import defaultdict

from tests.helpers import json_bytes, produce, wait_until
from tests.integration.test_replication import Replica

TRADES = {"id": "string", "sym": "string", "side": "string", "px": "float", "qty": "integer"}
SYMS = [f"S{i:02d}" for i in range(12)]


def _trades(start: int, stop: int, rng: random.Random) -> list[dict]:
    return [
        {
            "id": f"t{i}",
            "sym": rng.choice(SYMS),
            "side": rng.choice(["buy", "sell"]),
            "px": round(rng.uniform(10, 20), 2),
            "qty": rng.randrange(1, 500),
        }
        for i in range(start, stop)
    ]


def _by_sym(records: list[dict]) -> dict:
    """The view of ``volume`` computed here: buys only, qty summed, px averaged."""
    qty: dict[str, float] = defaultdict(float)
    px: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r["side"] == "buy":
            qty[r["sym"]] += r["qty"]
            px[r["sym"]].append(r["px"])
    return {s: (qty[s], sum(px[s]) / len(px[s])) for s in qty}


def _rows(service, table: str, key: str, *values: str) -> dict:
    columns = service.columns(table)
    return {columns[key][i]: tuple(columns[v][i] for v in values) for i in range(len(columns[key]))}


def _close(actual: dict, expected: dict) -> bool:
    if actual.keys() != expected.keys():
        return False
    for k, row in expected.items():
        for a, e in zip(actual[k], row, strict=True):
            if isinstance(e, float) and (a is None or abs(a - e) > 1e-6 * max(1.0, abs(e))):
                return False
            if not isinstance(e, float) and a != e:
                return False
    return True


VOLUME_VIEW = {
    "group_by": ["sym"],
    "columns": ["qty", "px"],
    "aggregates": {"qty": "sum", "px": "avg"},
    "filter": [["side", "==", "buy"]],
}


def test_derived_rows_follow_a_rolling_window_source(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=1)
    rng = random.Random(5)
    first = _trades(0, 3000, rng)
    produce(kafka.bootstrap, topic_name, [(0, None, json_bytes(r)) for r in first])
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "trades": {"topic": topic_name, "schema": TRADES, "limit": 1000},
                "volume": {"from": "trades", "view": VOLUME_VIEW},
                "count": {
                    "from": "trades",
                    "view": {
                        "group_by": ["sym", "side"],
                        "columns": ["id"],
                        "aggregates": {"id": "count"},
                    },
                },
            },
        }
    )
    wait_until(service.ready, what="ready")
    # Ready means the derived tables have caught up with their caught-up source.
    window = first[-1000:]
    assert _close(_rows(service, "volume", "sym", "qty", "px"), _by_sym(window))
    rng2 = random.Random(6)
    more = _trades(3000, 4500, rng2)
    # Only a few symbols from now on: the others age out of the window and must vanish.
    for r in more:
        r["sym"] = rng2.choice(SYMS[:3])
    produce(kafka.bootstrap, topic_name, [(0, None, json_bytes(r)) for r in more])
    window = (first + more)[-1000:]
    expected = _by_sym(window)
    assert set(expected) <= set(SYMS[:3])
    wait_until(
        lambda: _close(_rows(service, "volume", "sym", "qty", "px"), expected),
        what="volume equal to the aggregate of the last 1000 trades",
    )
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in window:
        counts[(r["sym"], r["side"])] += 1
    columns = service.columns("count")
    wait_until(
        lambda: (
            {
                (c["sym"][i], c["side"][i]): c["id"][i]
                for c in [service.columns("count")]
                for i in range(len(c["sym"]))
            }
            == dict(counts)
        ),
        what="counts per (sym, side)",
    )
    assert set(columns) == {"sym", "side", "id", "__key__"}
    _, tables = service.get("/api/tables")
    volume = next(t for t in tables if t["name"] == "volume")
    assert volume["from"] == "trades" and volume["schema"] == {
        "sym": "string",
        "qty": "float",
        "px": "float",
    }
    assert service.metric("livetables_derived_refresh_seconds_count", table="volume") > 0


POSITIONS = {"id": "string", "book": "string", "qty": "integer"}


def _fold(operations: list[tuple[str, dict | None]]) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for key, value in operations:
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value
    return rows


def _positions(start: int, stop: int, rng: random.Random, books: list[str]):
    """Upserts and tombstones of 200 ids, each id in one partition (its Kafka order)."""
    ops = []
    for _ in range(start, stop):
        key = f"p{rng.randrange(200)}"
        value = None
        if rng.random() > 0.25:
            value = {"id": key, "book": rng.choice(books), "qty": rng.randrange(-50, 100)}
        ops.append((key, value))
    return ops


def _send(kafka, topic: str, ops) -> None:
    produce(
        kafka.bootstrap,
        topic,
        [
            (int(key[1:]) % 3, key.encode(), None if value is None else json_bytes(value))
            for key, value in ops
        ],
    )


def _book_totals(rows: dict[str, dict]) -> dict[str, tuple]:
    totals: dict[str, list] = {}
    for row in rows.values():
        entry = totals.setdefault(row["book"], [0.0, 0])
        entry[0] += row["qty"]
        entry[1] += 1
    return {book: (total, count) for book, (total, count) in totals.items()}


def test_derived_rows_follow_tombstones_of_an_indexed_source(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=3)
    rng = random.Random(21)
    books = ["alpha", "bravo", "charlie", "delta"]
    ops = _positions(0, 2000, rng, books)
    _send(kafka, topic_name, ops)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "positions": {"topic": topic_name, "schema": POSITIONS, "index": "id"},
                "books": {
                    "from": "positions",
                    "refresh": "50ms",
                    "view": {
                        "group_by": ["book"],
                        "columns": ["qty", "id"],
                        "aggregates": {"qty": "sum", "id": "count"},
                    },
                },
                # A derived table of a derived table: how many books hold a net long position.
                "sides": {
                    "from": "books",
                    "view": {
                        "group_by": ["long"],
                        "columns": ["book"],
                        "aggregates": {"book": "count"},
                        "expressions": {"long": '"qty" > 0'},
                    },
                },
            },
        }
    )
    wait_until(service.ready, what="ready")
    assert _close(_rows(service, "books", "book", "qty", "id"), _book_totals(_fold(ops)))
    # Every position of two books is deleted: those groups must vanish.
    gone = [(key, None) for key, row in _fold(ops).items() if row["book"] in ("alpha", "bravo")]
    more = _positions(2000, 3000, rng, ["charlie", "delta"])
    _send(kafka, topic_name, gone + more)
    expected = _book_totals(_fold(ops + gone + more))
    assert set(expected) == {"charlie", "delta"}
    wait_until(
        lambda: _close(_rows(service, "books", "book", "qty", "id"), expected),
        what="books equal to the fold of the topic",
    )
    longs: dict[bool, int] = defaultdict(int)
    for total, _count in expected.values():
        longs[total > 0] += 1
    wait_until(
        lambda: _rows(service, "sides", "long", "book") == {k: (v,) for k, v in longs.items()},
        what="the derived table of the derived table",
    )
    assert service.metric("livetables_rows_applied_total", table="books", op="remove") == 2


def test_replicas_of_a_derived_table_get_its_updates_and_removals(kafka, topic_name, run_service):
    kafka.create_topic(topic_name, partitions=3)
    rng = random.Random(8)
    books = [f"b{i}" for i in range(30)]
    ops = _positions(0, 1500, rng, books)
    _send(kafka, topic_name, ops)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "positions": {"topic": topic_name, "schema": POSITIONS, "index": "id"},
                "books": {
                    "from": "positions",
                    "view": {"group_by": ["book"], "columns": ["qty"]},
                },
                "pairs": {
                    "from": "positions",
                    "view": {"group_by": ["book", "id"], "columns": ["qty"]},
                },
            },
        }
    )
    wait_until(service.ready, what="ready")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    replicas = {"books": Replica(), "pairs": Replica()}
    futures = [
        asyncio.run_coroutine_threadsafe(
            replica.run(f"ws://127.0.0.1:{service.service.port}/replicate/{name}", stop), loop
        )
        for name, replica in replicas.items()
    ]
    try:
        wait_until(lambda: all(r.table is not None for r in replicas.values()), what="snapshots")
        hello = replicas["pairs"].hello
        assert hello["index"] == "__key__" and hello["hidden"] == ["__key__"]
        assert replicas["books"].hello["index"] == "book"
        # Half the books lose every position: their rows leave the replicas too.
        gone = [(k, None) for k, row in _fold(ops).items() if int(row["book"][1:]) % 2]
        more = _positions(1500, 2500, rng, books[::2])
        _send(kafka, topic_name, gone + more)
        final = _fold(ops + gone + more)
        expected_books = {b: (float(t),) for b, (t, _c) in _book_totals(final).items()}
        expected_pairs = {(r["book"], k): (float(r["qty"]),) for k, r in final.items()}

        def replica_rows(name: str, *keys: str) -> dict:
            view = replicas[name].table.view()
            try:
                c = view.to_columns()
            finally:
                view.delete()
            return {
                tuple(c[k][i] for k in keys) if len(keys) > 1 else c[keys[0]][i]: (c["qty"][i],)
                for i in range(len(c["qty"]))
            }

        wait_until(lambda: replica_rows("books", "book") == expected_books, what="books replica")
        wait_until(
            lambda: replica_rows("pairs", "book", "id") == expected_pairs, what="pairs replica"
        )
        assert _rows(service, "books", "book", "qty") == expected_books
    finally:
        loop.call_soon_threadsafe(stop.set)
        for future in futures:
            future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_a_restart_from_snapshots_rebuilds_derived_tables_and_replays_retention(
    kafka, topic_name, run_service, tmp_path
):
    kafka.create_topic(topic_name, partitions=3)
    rng = random.Random(31)
    books = ["alpha", "bravo", "charlie"]
    ops = _positions(0, 600, rng, books)
    _send(kafka, topic_name, ops)
    config = {
        "kafka": {"bootstrap_servers": kafka.bootstrap},
        "snapshots": {"dir": str(tmp_path / "snapshots"), "interval": "1h"},
        "tables": {
            "positions": {"topic": topic_name, "schema": POSITIONS, "index": "id"},
            "recent": {"topic": topic_name, "schema": POSITIONS, "retention": "1h"},
            "books": {
                "from": "positions",
                "view": {
                    "group_by": ["book"],
                    "columns": ["qty", "id"],
                    "aggregates": {"qty": "sum", "id": "count"},
                },
            },
        },
    }
    first = run_service(config)
    wait_until(first.ready, what="ready")
    first.stop()  # the last snapshot of every snapshotted table is written now
    more = _positions(600, 900, rng, books)
    _send(kafka, topic_name, more)
    second = run_service(config)
    wait_until(second.ready, what="ready after the restart")
    assert second.metric("livetables_table_start", table="positions", kind="snapshot") == 1
    # The table with retention replays (its rows' times are not in a snapshot).
    assert second.metric("livetables_table_start", table="recent", kind="replay") == 1
    assert second.size("recent") == 900 - sum(1 for _k, v in ops + more if v is None)
    expected = _book_totals(_fold(ops + more))
    assert _close(_rows(second, "books", "book", "qty", "id"), expected)
