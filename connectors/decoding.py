"""From a raw Kafka batch to what one table update needs.

The value decoder turns bytes into rows; this module adds the table's
semantics on top, in whole-array operations:

* tombstones (null values) become removals of the row whose index equals the
  message key, on indexed tables; elsewhere they are counted and skipped;
* on an indexed table only the last operation per key in the batch survives,
  so upserts and removals keep their Kafka order per key (an update after a
  delete re-creates the row, a delete after an update removes it);
* an upsert whose index column is missing takes its index from the message key;
* a rolling-window (``limit``) table only needs the batch's last ``limit`` rows;
* columns from the message key (``key:``), headers (``headers:``) and Kafka
  metadata (``metadata:``) are added beside the value's columns; when the
  index column comes from a decoded key, tombstones remove by that key;
* a record with a string that is not valid UTF-8 (in its value, its key or a
  header column) is a bad record, ``invalid_utf8``: one validation per string
  column of the batch, value by value only in a column that fails. Whatever a
  decoder lets through, no such string reaches a table.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import (
    UNREADABLE_HEADERS,
    DecodedBatch,
    DecodeError,
    DecodeReason,
    Locator,
    RawBatch,
)
from connectors.decoders import make_decoder
from connectors.decoders.columns import (
    TIMESTAMP_MS,
    bytes_as,
    coerce,
    invalid_utf8_rows,
    is_utf8,
)
from connectors.schema import arrow_schema
from connectors.spec import TableDecodeSpec


def _drop_invalid_utf8(
    raw: RawBatch,
    rows: pa.Table,
    positions: np.ndarray,
    errors: list[DecodeError],
    where: np.ndarray | None = None,
    what: str = "column",
) -> tuple[pa.Table, np.ndarray]:
    """The rows without those of records holding a string that is not UTF-8.

    ``positions`` maps rows to records (through ``where`` into the batch, when
    they index a subset); every row of a bad record goes, and the record is one
    ``invalid_utf8`` error.
    """
    found = invalid_utf8_rows(rows)
    if found is None:
        return rows, positions
    bad, columns = found
    locate = _locator(raw, where)
    first_row: dict[int, int] = {}
    for i in np.flatnonzero(bad).tolist():
        first_row.setdefault(int(positions[i]), i)
    for position, i in sorted(first_row.items()):
        detail = f"{what} {columns[i]!r} is not valid UTF-8"
        errors.append(DecodeError(*locate(position), DecodeReason.INVALID_UTF8, detail))
    keep = ~np.isin(positions, np.fromiter(first_row, dtype=np.int64, count=len(first_row)))
    return rows.filter(pa.array(keep)), positions[keep]


def _locator(raw: RawBatch, mapping: np.ndarray | None) -> Locator:
    """Where the i-th decoded value came from; computed only for bad records."""

    def locate(i: int) -> tuple[str, int, int]:
        return raw.where(int(mapping[i]) if mapping is not None else i)

    return locate


class BatchDecoder:
    """Decodes raw batches for one table."""

    def __init__(self, spec: TableDecodeSpec):
        self.spec = spec
        self.schema = arrow_schema(dict(spec.columns))
        extra = spec.extra_columns
        self.value_schema = pa.schema([f for f in self.schema if f.name not in extra])
        self.values = make_decoder(spec.value, self.value_schema)
        self.index_type = self.schema.field(spec.index).type if spec.index else None
        self.extra = extra
        self.key_columns = list(spec.key_columns)
        self.keys = None
        if spec.key is not None:
            key_schema = pa.schema([self.schema.field(c) for c in self.key_columns])
            self.keys = make_decoder(spec.key, key_schema)
        self.index_from_key = spec.index is not None and spec.index in self.key_columns

    def decode(self, raw: RawBatch) -> DecodedBatch:
        n = len(raw)
        if n == 0:
            return DecodedBatch(rows=None)
        null_mask = raw.tombstones()
        reads_arrow = self.values.reads_arrow
        if null_mask is not None:
            present = np.flatnonzero(~null_mask)
            tombstones = np.flatnonzero(null_mask)
            if reads_arrow:
                values = raw.value_array.filter(pa.array(~null_mask))
            else:
                all_values = raw.values
                values = [all_values[i] for i in present.tolist()]
        else:
            present, tombstones = None, np.empty(0, np.int64)
            values = raw.value_array if reads_arrow else raw.values
        rows, row_positions, errors = self.values.decode_values(values, _locator(raw, present))
        if present is not None:
            row_positions = present[row_positions]
        timestamps = pa.array(raw.timestamps_ms, pa.int64())
        locate = _locator(raw, None)
        decoded_keys = None
        if self.extra:
            if self.key_columns:
                decoded_keys = self._decode_keys(raw, errors)
            rows, row_positions = self._add_extra_columns(
                raw, rows, row_positions, decoded_keys, errors
            )
        rows, row_positions = _drop_invalid_utf8(raw, rows, row_positions, errors)

        if self.spec.index is None:
            errors.extend(
                DecodeError(
                    *locate(int(i)),
                    DecodeReason.UNEXPECTED_TOMBSTONE,
                    "null value on a table without index",
                )
                for i in tombstones
            )
            if self.spec.limit is not None and rows.num_rows > self.spec.limit:
                rows = rows.slice(rows.num_rows - self.spec.limit)
            return DecodedBatch(
                rows=rows if rows.num_rows else None,
                errors=errors,
                records=n,
                timestamps_ms=timestamps,
            )
        return self._fold_indexed(
            raw, rows, row_positions, tombstones, errors, timestamps, decoded_keys
        )

    # -- key, header and metadata columns ------------------------------------------

    def _decode_keys(self, raw: RawBatch, errors: list[DecodeError]):
        """The key columns of every record: (table of key columns, slot per record).

        ``slot[i]`` is the row of record ``i`` in the table, -1 for a record without
        a key, -2 for a key that did not decode (counted as ``bad_key``; a tombstone's
        bad key is counted where tombstones become removals).
        """
        n = len(raw)
        slot = np.full(n, -1, dtype=np.int64)
        key_array = raw.key_array
        present = np.asarray(key_array.is_valid())
        where = np.flatnonzero(present)
        key_schema = pa.schema([self.schema.field(c) for c in self.key_columns])
        if not len(where):
            return key_schema.empty_table(), slot
        present_keys = key_array if len(where) == n else key_array.filter(pa.array(present))
        if self.keys is None:  # a string key into one column
            decoded, failed = bytes_as(present_keys.cast(pa.binary()), key_schema[0].type)
            good = np.flatnonzero(~failed)
            tombstones = raw.tombstones()
            for j in np.flatnonzero(failed).tolist():
                slot[where[j]] = -2
                if tombstones is None or not tombstones[where[j]]:
                    reason, detail = (
                        (DecodeReason.BAD_KEY, "")
                        if is_utf8(present_keys[j].as_py())
                        else (DecodeReason.INVALID_UTF8, "key")
                    )
                    errors.append(DecodeError(*_locator(raw, None)(int(where[j])), reason, detail))
            slot[where[good]] = np.arange(len(good))
            kept = decoded if len(good) == len(where) else decoded.take(pa.array(good))
            return pa.Table.from_arrays([kept], schema=key_schema), slot
        if self.keys.reads_arrow:
            keys = present_keys
        else:
            all_keys = raw.keys
            keys = [all_keys[i] for i in where.tolist()]
        table, positions, key_errors = self.keys.decode_values(keys, _locator(raw, where))
        table, positions = _drop_invalid_utf8(
            raw, table, positions, key_errors, where=where, what="key"
        )
        if key_errors:
            index = {
                (p, o): i for i, (p, o) in enumerate(zip(raw.partitions, raw.offsets, strict=True))
            }
            key_errors = [
                e for e in key_errors if raw.values[index[(e.partition, e.offset)]] is not None
            ]
        for error in key_errors:
            if error.reason == DecodeReason.INVALID_UTF8:
                errors.append(error)
                continue
            errors.append(
                DecodeError(
                    error.topic,
                    error.partition,
                    error.offset,
                    DecodeReason.BAD_KEY,
                    f"{error.reason}: {error.detail}",
                )
            )
        slot[where] = -2
        slot[where[positions]] = np.arange(len(positions))
        return table, slot

    def _add_extra_columns(self, raw, rows, row_positions, decoded_keys, errors):
        """Rows with the key, header and metadata columns, in the table's column order."""
        columns: dict[str, pa.Array] = {}
        if decoded_keys is not None:
            table, slot = decoded_keys
            slots = slot[row_positions]
            if (slots == -2).any():  # the key did not decode: the record is a bad one
                keep = slots != -2
                rows = rows.filter(pa.array(keep))
                row_positions, slots = row_positions[keep], slots[keep]
            take = pa.array(np.where(slots >= 0, slots, 0), mask=slots < 0)
            for name in self.key_columns:
                columns[name] = (
                    table.column(name).take(take)
                    if table.num_rows
                    else pa.nulls(len(slots), self.schema.field(name).type)
                )
        if self.spec.headers:
            not_text = np.zeros(len(row_positions), dtype=bool)
            for name, header in self.spec.headers.items():
                columns[name], failed = self._header_column(raw, row_positions, header, name)
                not_text |= failed
            if not_text.any():  # a header that is not UTF-8 makes its record a bad one
                locate = _locator(raw, None)
                for i in np.flatnonzero(not_text).tolist():
                    errors.append(
                        DecodeError(
                            *locate(int(row_positions[i])), DecodeReason.INVALID_UTF8, "header"
                        )
                    )
                keep = pa.array(~not_text)
                rows = rows.filter(keep)
                row_positions = row_positions[~not_text]
                columns = {c: a.filter(keep) for c, a in columns.items()}
        if self.spec.metadata:
            take = pa.array(row_positions, pa.int64())
            for name, item in self.spec.metadata.items():
                if item == "partition":
                    columns[name] = pa.array(raw.partitions, pa.int64()).take(take)
                elif item == "offset":
                    columns[name] = pa.array(raw.offsets, pa.int64()).take(take)
                elif item == "timestamp":
                    stamps = pa.array(raw.timestamps_ms, pa.int64()).take(take)
                    columns[name] = stamps.cast(TIMESTAMP_MS)
                else:
                    columns[name] = pa.array([raw.topic] * len(row_positions), pa.string())
            for name in self.spec.metadata:
                columns[name] = coerce(columns[name], self.schema.field(name).type)
        arrays = [
            columns[f.name] if f.name in columns else rows.column(f.name) for f in self.schema
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema), row_positions

    def _header_column(
        self, raw, positions, header: str, column: str
    ) -> tuple[pa.Array, np.ndarray]:
        """One header's value per row (its last occurrence), as the column's type.

        Also returns a mask of the rows whose header value is not UTF-8; a value
        that is text but does not convert to the column's type is null.
        """
        target = self.schema.field(column).type
        all_headers = raw.headers or [None] * len(raw)
        values = []
        unreadable = np.zeros(len(positions), dtype=bool)
        for row, i in enumerate(positions.tolist()):
            found = None
            headers = all_headers[i]
            if headers is UNREADABLE_HEADERS:
                unreadable[row] = True
                headers = None
            for name, value in headers or ():
                if name == header:
                    found = value
            values.append(found)
        converted, failed = bytes_as(pa.array(values, pa.binary()), target)
        if failed.any():
            failed = failed & np.fromiter(
                (v is not None and not is_utf8(v) for v in values), dtype=bool, count=len(values)
            )
        return converted, failed | unreadable

    def _keys_as_index(self, raw: RawBatch, positions: np.ndarray, decoded_keys) -> pa.Array:
        """The message keys at ``positions`` as index values (null where unusable)."""
        if self.index_from_key and decoded_keys is not None:
            table, slot = decoded_keys
            slots = slot[positions]
            if not table.num_rows:
                return pa.nulls(len(positions), self.index_type)
            take = pa.array(np.where(slots >= 0, slots, 0), mask=slots < 0)
            return table.column(self.spec.index).take(take).combine_chunks()
        keys = raw.key_array.take(pa.array(positions, pa.int64())).cast(pa.binary())
        return bytes_as(keys, self.index_type)[0]

    def _fold_indexed(
        self,
        raw: RawBatch,
        rows: pa.Table,
        row_positions: np.ndarray,
        tombstones: np.ndarray,
        errors: list[DecodeError],
        timestamps: pa.Array,
        decoded_keys,
    ) -> DecodedBatch:
        index = self.spec.index
        assert index is not None
        locate = _locator(raw, None)
        # Upserts: the index column, or the message key where the record has none.
        index_values = rows.column(index).combine_chunks()
        if index_values.null_count:
            index_values = pc.coalesce(
                index_values, self._keys_as_index(raw, row_positions, decoded_keys)
            )
            missing = pc.is_null(index_values)
            if index_values.null_count:
                errors.extend(
                    DecodeError(
                        *locate(int(row_positions[i])),
                        DecodeReason.MISSING_INDEX,
                        f"no {index!r} in the record and no usable message key",
                    )
                    for i in pc.indices_nonzero(missing).to_pylist()
                )
                keep = pc.invert(missing)
                rows = rows.filter(keep)
                row_positions = row_positions[keep.to_numpy(zero_copy_only=False)]
                index_values = index_values.filter(keep)
            rows = rows.set_column(rows.schema.get_field_index(index), index, index_values)

        # Removals: the message key of each tombstone.
        removal_keys = pa.array([], self.index_type)
        removal_positions = tombstones
        if len(tombstones):
            removal_keys = self._keys_as_index(raw, tombstones, decoded_keys)
            if removal_keys.null_count:
                valid = pc.is_valid(removal_keys)
                errors.extend(
                    DecodeError(
                        *locate(int(tombstones[i])),
                        DecodeReason.BAD_KEY,
                        f"tombstone key is missing or not a valid {self.spec.columns[index]}",
                    )
                    for i in pc.indices_nonzero(pc.invert(valid)).to_pylist()
                )
                removal_keys = removal_keys.filter(valid)
                removal_positions = tombstones[valid.to_numpy(zero_copy_only=False)]

        # The last operation per key wins; earlier ones in the batch are folded away.
        # Operations are ranked by record position, then by row within a record (one
        # message of some formats holds several rows).
        upserts = rows.num_rows
        operations = upserts + len(removal_positions)
        if operations == 0:
            return DecodedBatch(
                rows=None, errors=errors, records=len(raw), timestamps_ms=timestamps
            )
        positions = np.concatenate([row_positions, removal_positions]).astype(np.int64)
        order = np.lexsort((np.arange(operations), positions))
        rank = np.empty(operations, dtype=np.int64)
        rank[order] = np.arange(operations)
        ops = pa.table(
            {
                "key": pa.concat_arrays([index_values.cast(self.index_type), removal_keys]),
                "rank": rank,
            }
        )
        last = ops.group_by("key", use_threads=False).aggregate([("rank", "max")])
        winners = np.sort(order[last.column("rank_max").to_numpy()])
        upsert_ops = winners[winners < upserts]
        removal_ops = winners[winners >= upserts] - upserts
        return DecodedBatch(
            rows=rows.take(pa.array(upsert_ops)) if len(upsert_ops) else None,
            removals=removal_keys.take(pa.array(removal_ops)) if len(removal_ops) else None,
            errors=errors,
            records=len(raw),
            timestamps_ms=timestamps,
        )
