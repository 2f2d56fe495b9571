"""The update-only ceiling: Perspective's own ``update()`` on the same batches, no Kafka.

No ingest can beat Perspective applying the rows it is given: the records are decoded
once by livetables' own decoder (outside the timing) into the Arrow batches the service
would apply, cut to the size of the service's applied batches in the same run, and
applied to a fresh table with the service's options, the way the service applies them
(one chunk per column; a rolling window in slices). The end-to-end rate as a fraction
of this rate says how much of the machine goes to something other than the update.
"""

from __future__ import annotations

import time

import perspective
import pyarrow as pa

from bench.records import SCHEMA, value
from connectors.base import RawBatch
from connectors.decoding import BatchDecoder
from service.config import TableConfig, decode_spec
from service.tables import update_table


def decoded_batches(
    records: int, batch_rows: int, key_space: int | None = None, **table: object
) -> list[pa.Table]:
    """The benchmark's ``records`` decoded in batches of ``batch_rows`` records.

    Each batch is decoded on its own, so an indexed table's batches are folded per key
    as the service folds them (last write per key within a batch).
    """
    config = TableConfig.model_validate({"topic": "t", "schema": SCHEMA, **table})
    decoder = BatchDecoder(decode_spec(config))
    batches = []
    for start in range(0, records, batch_rows):
        count = min(batch_rows, records - start)
        values = [value(i, key_space) for i in range(start, start + count)]
        keys = [None] * count
        raw = RawBatch("t", values, keys, [0] * count, [0] * count, list(range(count)))
        rows = decoder.decode(raw).rows
        assert isinstance(rows, pa.Table)
        batches.append(rows.combine_chunks())
    return batches


def update_only(
    records: int, batch_rows: int, key_space: int | None = None, **table: object
) -> dict:
    """Records/s of ``update()`` alone on a fresh table with the service's options."""
    config = TableConfig.model_validate({"topic": "t", "schema": SCHEMA, **table})
    batches = decoded_batches(records, max(1, batch_rows), key_space, **table)
    options: dict[str, object] = {}
    if config.engine_index is not None:
        options["index"] = config.engine_index
    if config.engine_limit is not None:
        options["limit"] = config.engine_limit
    target = perspective.Server().new_local_client().table(config.engine_schema, **options)
    limit = config.engine_limit
    started = time.perf_counter()
    for rows in batches:
        update_table(target, rows, limit)
    seconds = time.perf_counter() - started
    return {
        "records": records,
        "seconds": seconds,
        "rate": records / seconds if seconds else float("nan"),
        "batch_rows": batch_rows,
    }
