"""From a raw Kafka batch to what one table update needs.

The value decoder turns bytes into rows; this module adds the table's
semantics on top, in whole-array operations:

* tombstones (null values) become removals of the row whose index equals the
  message key, on indexed tables; elsewhere they are counted and skipped;
* on an indexed table only the last operation per key in the batch survives,
  so upserts and removals keep their Kafka order per key (an update after a
  delete re-creates the row, a delete after an update removes it);
* an upsert whose index column is missing takes its index from the message key;
* a rolling-window (``limit``) table only needs the batch's last ``limit`` rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import DecodedBatch, DecodeError, Locator, RawBatch
from connectors.decoders import make_decoder
from connectors.schema import arrow_schema
from service.config import TableConfig


def _locator(raw: RawBatch, mapping: np.ndarray | None) -> Locator:
    """Where the i-th decoded value came from; computed only for bad records."""

    def locate(i: int) -> tuple[str, int, int]:
        j = int(mapping[i]) if mapping is not None else i
        return raw.topic, raw.partitions[j], raw.offsets[j]

    return locate


class BatchDecoder:
    """Decodes raw batches for one table."""

    def __init__(self, table_name: str, table: TableConfig):
        self.table_name = table_name
        self.table = table
        self.schema = arrow_schema(table.schema_)
        self.values = make_decoder(table, self.schema)
        self.index_type = self.schema.field(table.index).type if table.index else None

    def decode(self, raw: RawBatch) -> DecodedBatch:
        n = len(raw)
        if n == 0:
            return DecodedBatch(rows=None)
        if None in raw.values:
            null_mask = np.fromiter((v is None for v in raw.values), dtype=bool, count=n)
            present = np.flatnonzero(~null_mask)
            tombstones = np.flatnonzero(null_mask)
            values = [raw.values[i] for i in present]
        else:
            present, tombstones, values = None, np.empty(0, np.int64), raw.values
        rows, row_positions, errors = self.values.decode_values(values, _locator(raw, present))
        if present is not None:
            row_positions = present[row_positions]
        timestamps = pa.array(raw.timestamps_ms, pa.int64())
        locate = _locator(raw, None)

        if self.table.index is None:
            errors.extend(
                DecodeError(
                    *locate(int(i)), "unexpected_tombstone", "null value on a table without index"
                )
                for i in tombstones
            )
            if self.table.limit is not None and rows.num_rows > self.table.limit:
                rows = rows.slice(rows.num_rows - self.table.limit)
            return DecodedBatch(
                rows=rows if rows.num_rows else None,
                errors=errors,
                records=n,
                timestamps_ms=timestamps,
            )
        return self._fold_indexed(raw, rows, row_positions, tombstones, errors, timestamps)

    def _keys_as_index(self, raw: RawBatch, positions: np.ndarray) -> pa.Array:
        """The message keys at ``positions`` as index values (null where unusable)."""
        keys = pa.array([raw.keys[i] for i in positions], pa.binary())
        try:
            return pc.cast(pc.cast(keys, pa.string()), self.index_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Some key is not UTF-8 or does not parse as the index type: cast one
            # at a time, only in this rare batch, and leave the bad ones null.
            converted = []
            for value in keys.to_pylist():
                try:
                    text = value.decode("utf-8") if value is not None else None
                    converted.append(pa.scalar(text, pa.string()).cast(self.index_type).as_py())
                except (UnicodeDecodeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    converted.append(None)
            return pa.array(converted, self.index_type)

    def _fold_indexed(
        self,
        raw: RawBatch,
        rows: pa.Table,
        row_positions: np.ndarray,
        tombstones: np.ndarray,
        errors: list[DecodeError],
        timestamps: pa.Array,
    ) -> DecodedBatch:
        index = self.table.index
        assert index is not None
        locate = _locator(raw, None)
        # Upserts: the index column, or the message key where the record has none.
        index_values = rows.column(index).combine_chunks()
        if index_values.null_count:
            index_values = pc.coalesce(index_values, self._keys_as_index(raw, row_positions))
            missing = pc.is_null(index_values)
            if index_values.null_count:
                errors.extend(
                    DecodeError(
                        *locate(int(row_positions[i])),
                        "missing_index",
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
            removal_keys = self._keys_as_index(raw, tombstones)
            if removal_keys.null_count:
                valid = pc.is_valid(removal_keys)
                errors.extend(
                    DecodeError(
                        *locate(int(tombstones[i])),
                        "bad_key",
                        f"tombstone key is missing or not a valid {self.table.schema_[index]}",
                    )
                    for i in pc.indices_nonzero(pc.invert(valid)).to_pylist()
                )
                removal_keys = removal_keys.filter(valid)
                removal_positions = tombstones[valid.to_numpy(zero_copy_only=False)]

        # The last operation per key wins; earlier ones in the batch are folded away.
        upserts = rows.num_rows
        operations = upserts + len(removal_positions)
        if operations == 0:
            return DecodedBatch(
                rows=None, errors=errors, records=len(raw), timestamps_ms=timestamps
            )
        ops = pa.table(
            {
                "key": pa.concat_arrays([index_values.cast(self.index_type), removal_keys]),
                "position": np.concatenate([row_positions, removal_positions]).astype(np.int64),
            }
        )
        last = ops.group_by("key", use_threads=False).aggregate([("position", "max")])
        winners = pc.index_in(last.column("position_max"), ops.column("position"))
        winners = np.sort(winners.to_numpy())
        upsert_ops = winners[winners < upserts]
        removal_ops = winners[winners >= upserts] - upserts
        return DecodedBatch(
            rows=rows.take(pa.array(upsert_ops)) if len(upsert_ops) else None,
            removals=removal_keys.take(pa.array(removal_ops)) if len(removal_ops) else None,
            errors=errors,
            records=len(raw),
            timestamps_ms=timestamps,
        )
