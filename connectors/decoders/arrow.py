"""Arrow values: each message is an Arrow IPC stream holding one or more rows.

Every message is its own stream with its own schema, so messages are read one
at a time (``pyarrow.ipc.open_stream``, no per-row Python) and their columns
taken by name, or by ``fields:`` path into struct columns; a column a message
lacks is null. Rows keep the position of the message they came from, so an
indexed table folds a multi-row message like consecutive records.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import DecodeError, Decoder, DecodeReason, Locator
from connectors.decoders.columns import CAST_ERRORS, coerce


class ArrowDecoder(Decoder):
    name = "arrow"

    def __init__(self, spec, arrow_schema):
        super().__init__(spec, arrow_schema)
        self._paths = {f.name: spec.paths.get(f.name, (f.name,)) for f in arrow_schema}

    def decode_values(
        self, values: list[bytes], locate: Locator
    ) -> tuple[pa.Table, np.ndarray, list[DecodeError]]:
        errors: list[DecodeError] = []
        pieces: list[pa.Table] = []
        positions: list[np.ndarray] = []
        for i, value in enumerate(values):
            try:
                table = pa.ipc.open_stream(value).read_all()
            except (pa.ArrowInvalid, OSError, ValueError) as exc:
                errors.append(DecodeError(*locate(i), DecodeReason.INVALID_ARROW, str(exc)[:200]))
                continue
            try:
                rows = self._columns(table)
            except (*CAST_ERRORS, KeyError) as exc:
                errors.append(DecodeError(*locate(i), DecodeReason.TYPE_MISMATCH, str(exc)[:200]))
                continue
            if rows.num_rows:
                pieces.append(rows)
                positions.append(np.full(rows.num_rows, i, dtype=np.int64))
        if not pieces:
            return self.arrow_schema.empty_table(), np.empty(0, np.int64), errors
        rows = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        return rows, np.concatenate(positions), errors

    def _columns(self, table: pa.Table) -> pa.Table:
        columns = []
        for f in self.arrow_schema:
            column = _by_path(table, self._paths[f.name])
            columns.append(
                pa.nulls(table.num_rows, f.type) if column is None else coerce(column, f.type)
            )
        return pa.Table.from_arrays(columns, schema=self.arrow_schema)


def _by_path(table: pa.Table, path: tuple[str, ...]) -> pa.Array | None:
    if not path:
        return table.column(0).combine_chunks() if table.num_columns else None
    head, *rest = path
    if head not in table.column_names:
        return None
    column = table.column(head).combine_chunks()
    for part in rest:
        if not pa.types.is_struct(column.type) or column.type.get_field_index(part) < 0:
            return None
        column = pc.struct_field(column, [column.type.get_field_index(part)])
    return column
