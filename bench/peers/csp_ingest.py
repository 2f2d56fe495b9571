"""The peer baseline: Point72's csp consuming a Kafka topic into a Perspective table.

Run with the peer's own interpreter (``bench/peers/setup_csp_env.sh`` builds it)::

    bench/.venv-csp/bin/python bench/peers/csp_ingest.py --bootstrap HOST:PORT --topic T \\
        --records N --schema json-small [--index COL] [--limit N]

It prints one JSON line, ``{"records", "seconds", "records_per_s", "notes"}``, timed from the
first record reaching the graph to the moment ``--records`` records are applied to the table,
the same span the other baselines and livetables are timed over. If the peer cannot run, it
prints ``{"skipped": reason}`` and exits 0 so the suite can report that instead of a figure.

What a competent csp user writes, and what this script therefore does:

* csp's own Kafka adapter, ``KafkaAdapterManager``, starting at the earliest offset, with
  ``JSONTextMessageMapper`` decoding each record (rapidjson, in C++, on the adapter's
  consumer thread) into a ``csp.Struct``.
* ``PushMode.BURST``: every record that arrived since the previous engine cycle comes in as
  one list, so while ``update()`` runs the next batch accumulates by itself; no engine cycle
  per record.
* ``csp.adapters.arrow.struct_to_record_batches`` (a C++ node) turns each burst into Arrow
  record batches, so no Python runs per record. Measured alternatives on 500k records:
  Python comprehensions into ``pa.RecordBatch`` columns ran about as fast (the adapter's
  consumer thread is the limit: with no table at all it delivered ~0.7 M records/s), an
  ``update()`` with a dict of Python lists about half as fast, a list of dicts slower still.
* One ``table.update(pa.Table)`` per batch: the buffer is applied when it holds ``--batch``
  rows or when a ``--flush-ms`` timer fires, whichever comes first, so a trickle is not held
  back and a backlog goes in bounded batches (2,000 rows on a limit table, whose update cost
  grows with the batch; 10,000 otherwise).
* ``csp.adapters.perspective.PerspectiveAdapter`` is not used: it turns every engine cycle
  into one row dict, flushes on a one-second throttle and serves its own tornado app; it
  would measure that adapter's design rather than what csp can do.
* The consumer gets the librdkafka tuning livetables ships by default (no one-second fetch
  backoff, a deep local queue), so the comparison is with a tuned peer; ``--csp-defaults``
  measures csp's own settings instead.

Limits of csp's Kafka adapter (csp 0.19.1) that matter here:

* Records without a key are dropped: ``KafkaAdapterManager::onMessage`` reports "Message
  received with null key" on the status stream and never ticks them, even for a wildcard
  (all-keys) subscription. A topic produced without keys yields no rows; this script sees
  that and prints ``{"skipped": ...}``. Produce the peer's topic with any message key.
* It consumes through a consumer group (``subscribe`` plus a rebalance), not ``assign``, so
  the first record arrives after the group's join (about a second against the suite's broker,
  longer with a broker's default ``group.initial.rebalance.delay.ms``). That wait is outside
  the timed span and reported as ``first_row_after_s``.
* One subscription is served by one consumer thread, which fetches, parses the JSON and
  builds the structs for every partition. Several adapter managers sharing one ``group_id``
  do split the partitions between threads and measured faster, but delivered records more
  than once (a 500,000-row run held 190,357 distinct records), so they are not used.
"""

# No ``from __future__ import annotations``: csp reads struct and node annotations as types.
import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

try:
    import csp
    import perspective
    import pyarrow as pa
    from csp import ts
    from csp.adapters.arrow import struct_to_record_batches
    from csp.adapters.kafka import JSONTextMessageMapper, KafkaAdapterManager, KafkaStartOffset
    from csp.adapters.status import Status
except ImportError as error:  # the suite runs this with whatever interpreter it finds
    _IMPORT_ERROR: str | None = (
        f"csp or perspective is not importable ({error}); run bench/peers/setup_csp_env.sh"
    )
else:
    _IMPORT_ERROR = None

SCHEMAS = {
    "json-small": {"i": "integer", "s": "string", "p": "float", "q": "integer", "b": "boolean"}
}

# The same librdkafka defaults livetables ships (connectors/kafka.py): without them the
# consumer idles up to a second between fetches while a backlog waits.
TUNED_CONSUMER = {
    "fetch.queue.backoff.ms": "1",
    "queued.min.messages": "200000",
    "fetch.wait.max.ms": "50",
}

# A topic whose records all lack keys would otherwise spin until the timeout.
NULL_KEYS_BEFORE_SKIP = 1000

if _IMPORT_ERROR is None:

    class SmallRecord(csp.Struct):
        """The benchmark record, ``{"i":1234567,"s":"AAPL","p":187.25,"q":300,"b":true}``."""

        i: int
        s: str
        p: float
        q: int
        b: bool


@dataclass(eq=False)  # hashed by identity, so csp can memoize the graph
class Progress:
    """Shared between the graph and the caller: csp nodes can only hand results out by reference."""

    target: int
    batch: int
    applied: int = 0
    updates: int = 0
    null_keys: int = 0
    errors: list[str] = field(default_factory=list)
    started: float | None = None
    first_row: float | None = None
    last_update: float | None = None
    done: float | None = None


if _IMPORT_ERROR is None:

    @csp.node
    def apply_to_table(
        batches: ts[[pa.RecordBatch]],
        status: ts[Status],
        flush: ts[bool],
        table: object,
        progress: object,
    ):
        """Buffer record batches; apply them at ``progress.batch`` rows or when ``flush`` ticks."""
        with csp.state():
            s_buffer = []
            s_rows = 0

        if csp.ticked(batches):
            if progress.first_row is None:
                progress.first_row = time.perf_counter()
            s_buffer.extend(batches)
            s_rows += sum(b.num_rows for b in batches)

        if csp.ticked(status):
            if "null key" in status.msg:
                progress.null_keys += 1
            elif status.level >= 3 and len(progress.errors) < 5:
                progress.errors.append(status.msg)
            if not progress.applied and not s_rows and progress.null_keys >= NULL_KEYS_BEFORE_SKIP:
                csp.stop_engine()

        if s_rows and (s_rows >= progress.batch or csp.ticked(flush)):
            # Perspective takes a pa.Table, not a RecordBatch; slicing one is zero-copy, and
            # bounded updates keep limit tables fast (their cost grows with the batch).
            pending = pa.Table.from_batches(s_buffer).slice(0, progress.target - progress.applied)
            s_buffer = []
            s_rows = 0
            for offset in range(0, pending.num_rows, progress.batch):
                part = pending.slice(offset, progress.batch)
                table.update(part)
                progress.applied += part.num_rows
                progress.updates += 1
            progress.last_update = time.perf_counter()
            if progress.applied >= progress.target:
                progress.done = time.perf_counter()
                csp.stop_engine()

    @csp.graph
    def ingest(
        bootstrap: str,
        topic: str,
        consumer_options: dict,
        batch: int,
        flush_interval: timedelta,
        table: object,
        progress: object,
    ):
        """Kafka adapter (BURST) -> csp's C++ struct-to-Arrow node -> one table-applying node."""
        kafka = KafkaAdapterManager(
            broker=bootstrap,
            start_offset=KafkaStartOffset.EARLIEST,
            rd_kafka_consumer_conf_options=consumer_options,
            poll_timeout=timedelta(milliseconds=100),
        )
        records = kafka.subscribe(
            SmallRecord, JSONTextMessageMapper(), topic=topic, push_mode=csp.PushMode.BURST
        )
        batches = struct_to_record_batches(records, SmallRecord, max_batch_size=batch)
        apply_to_table(batches, kafka.status(), csp.timer(flush_interval, True), table, progress)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the Kafka broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, required=True, help="stop after this many records")
    parser.add_argument("--schema", choices=sorted(SCHEMAS), default="json-small")
    parser.add_argument("--index", help="make the table indexed on this column")
    parser.add_argument("--limit", type=int, help="make the table a rolling window of N rows")
    parser.add_argument(
        "--batch",
        type=int,
        help="rows per update() at most (default 10000, or 2000 for a limit table, whose "
        "update cost grows with the batch)",
    )
    parser.add_argument("--flush-ms", type=float, default=20.0, help="apply a partial batch after")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after seconds")
    parser.add_argument(
        "--csp-defaults", action="store_true", help="csp's librdkafka settings, not livetables'"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the graph once and print the JSON result line."""
    args = _parse(argv)
    if args.batch is None:
        args.batch = 2_000 if args.limit else 10_000
    if _IMPORT_ERROR is not None:
        print(json.dumps({"skipped": _IMPORT_ERROR}))
        return 0
    options: dict[str, Any] = {}
    if args.index:
        options["index"] = args.index
    if args.limit:
        options["limit"] = args.limit
    table = perspective.Server().new_local_client().table(dict(SCHEMAS[args.schema]), **options)
    progress = Progress(target=args.records, batch=args.batch, started=time.perf_counter())
    consumer = {} if args.csp_defaults else dict(TUNED_CONSUMER)
    csp.run(
        ingest,
        args.bootstrap,
        args.topic,
        consumer,
        args.batch,
        timedelta(milliseconds=args.flush_ms),
        table,
        progress,
        starttime=datetime.now(UTC).replace(tzinfo=None),
        endtime=timedelta(seconds=args.timeout),
        realtime=True,
    )

    if progress.applied == 0 and progress.null_keys:
        print(
            json.dumps(
                {
                    "skipped": "csp's Kafka adapter drops records without a message key "
                    f"({progress.null_keys} null-key records, none ticked); "
                    "produce the topic with keys to measure it"
                }
            )
        )
        return 0
    # On a timeout, the span ends at the last update: the idle wait after it is not ingest.
    finished = progress.done or progress.last_update or 0.0
    seconds = finished - (progress.first_row or finished)
    notes = [
        f"csp {csp.__version__}: one KafkaAdapterManager, JSONTextMessageMapper into a "
        "csp.Struct, PushMode.BURST, struct_to_record_batches; one update(pa.Table) per "
        f"<= {args.batch} rows, partial batches after {args.flush_ms:g} ms "
        f"({progress.updates} updates)",
        "csp librdkafka defaults" if args.csp_defaults else "livetables' librdkafka tuning",
        f"table size {table.size()}",
    ]
    if progress.null_keys:
        notes.append(f"{progress.null_keys} records without a key dropped by the adapter")
    if progress.errors:
        notes.append("adapter errors: " + " | ".join(progress.errors))
    result: dict[str, Any] = {
        "records": progress.applied,
        "seconds": round(seconds, 4),
        "records_per_s": round(progress.applied / seconds) if seconds > 0 else None,
        "first_row_after_s": (
            round(progress.first_row - progress.started, 2) if progress.first_row else None
        ),
        "notes": "; ".join(notes),
    }
    if progress.done is None:
        result["timed_out"] = True
    print(json.dumps(result))
    return 0 if progress.done is not None else 1


if __name__ == "__main__":
    sys.exit(main())
