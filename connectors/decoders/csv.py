"""CSV values: one row per message, parsed a whole batch at a time by pyarrow's CSV reader.

Without a header, a message is one line whose fields are, in order,
``format_options.columns`` (or the table's columns in schema order). With
``header: true`` a message is a header line and a data line, and fields are
matched by name; messages are grouped by header, so a steady stream still
parses in one call. ``fields:`` maps a column to a CSV column of another name.

A batch that does not parse (a line with the wrong number of fields, a value
that is not of its column's type) is split in halves until the bad records
stand alone, as for JSON; they are counted as ``invalid_csv``,
``type_mismatch`` or ``invalid_utf8`` (pyarrow's reader checks that string
columns are UTF-8). Datetime columns take ISO 8601 or epoch numbers.
"""

from __future__ import annotations

import csv as _csv
import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.base import DecodeError, Decoder, DecodeReason, Locator
from connectors.decoders.columns import CAST_ERRORS, coerce, is_utf8
from connectors.halves import split_until_isolated

_TEXT_PARSED = (pa.types.is_timestamp, pa.types.is_date, pa.types.is_boolean)
# What a parse of bad lines raises: the group is split until they stand alone.
_PARSE_ERRORS = (*CAST_ERRORS, ValueError, UnicodeDecodeError)

# The values of one header line: (column names, positions in the batch, lines after the header).
_Group = tuple[list[str], list[int], list[bytes]]


class CsvDecoder(Decoder):
    name = "csv"
    options = frozenset({"delimiter", "header", "columns"})

    def __init__(self, spec, arrow_schema):
        super().__init__(spec, arrow_schema)
        options = spec.options
        self._delimiter = options.delimiter
        self._header = options.header
        # column -> CSV column name
        self._sources = {
            f.name: ".".join(spec.paths.get(f.name, (f.name,))) or f.name for f in arrow_schema
        }
        self._names = list(options.columns or self._sources.values())
        self._types: dict[str, pa.DataType] = {}
        for f in arrow_schema:
            source = self._sources[f.name]
            text = any(check(f.type) for check in _TEXT_PARSED)
            self._types.setdefault(source, pa.string() if text else f.type)

    def decode_values(
        self, values: list[bytes], locate: Locator
    ) -> tuple[pa.Table, np.ndarray, list[DecodeError]]:
        errors: list[DecodeError] = []
        groups: dict[bytes | None, _Group]
        if not self._header:
            groups = {None: (self._names, list(range(len(values))), values)}
        else:
            groups = self._by_header(values, locate, errors)
        pieces: list[pa.Table] = []
        positions: list[np.ndarray] = []
        for names, members, lines in groups.values():
            index = np.array(members, dtype=np.int64)
            self._decode_group(names, lines, index, locate, pieces, positions, errors)
        if not pieces:
            return self.arrow_schema.empty_table(), np.empty(0, np.int64), errors
        rows = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        kept = np.concatenate(positions)
        if len(groups) > 1:
            order = np.argsort(kept, kind="stable")
            rows, kept = rows.take(pa.array(order)), kept[order]
        return rows, kept, errors

    def _by_header(
        self, values: list[bytes], locate: Locator, errors: list[DecodeError]
    ) -> dict[bytes | None, _Group]:
        groups: dict[bytes | None, _Group] = {}
        for i, value in enumerate(values):
            header, newline, line = value.partition(b"\n")
            if not newline:
                errors.append(DecodeError(*locate(i), DecodeReason.INVALID_CSV, "no header line"))
                continue
            group = groups.get(header)
            if group is None:
                try:
                    names = self._header_names(header)
                except (_csv.Error, StopIteration, UnicodeDecodeError) as exc:
                    errors.append(DecodeError(*locate(i), DecodeReason.INVALID_CSV, str(exc)[:200]))
                    continue
                group = groups[header] = (names, [], [])
            group[1].append(i)
            group[2].append(line.rstrip(b"\r\n"))
        return groups

    def _header_names(self, header: bytes) -> list[str]:
        """Column names of a header line (once per distinct header in a batch)."""
        line = header.rstrip(b"\r").decode("utf-8")
        return next(_csv.reader([line], delimiter=self._delimiter))

    def _parse(self, names: list[str], lines: list[bytes]) -> pa.Table:
        buffer = b"\n".join(lines)
        if buffer.count(b"\n") != len(lines) - 1:
            raise ValueError("a value holds more than one line")
        wanted = [n for n in dict.fromkeys(self._sources.values()) if n in names]
        parsed = pacsv.read_csv(
            io.BytesIO(buffer + b"\n"),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=self._delimiter, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: self._types[n] for n in wanted},
                include_columns=wanted,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        if parsed.num_rows != len(lines):
            raise ValueError("the batch did not parse into one row per value")
        columns = []
        for f in self.arrow_schema:
            source = self._sources[f.name]
            if source in names:
                columns.append(coerce(parsed.column(source), f.type))
            else:
                columns.append(pa.nulls(parsed.num_rows, f.type))
        return pa.Table.from_arrays(columns, schema=self.arrow_schema)

    def _decode_group(
        self,
        names: list[str],
        lines: list[bytes],
        index: np.ndarray,
        locate: Locator,
        pieces: list[pa.Table],
        positions: list[np.ndarray],
        errors: list[DecodeError],
    ) -> None:
        """Parse the lines of one header in one call; bad lines are isolated and reported."""

        def attempt(start: int, stop: int) -> None:
            pieces.append(self._parse(names, lines[start:stop]))
            positions.append(index[start:stop])

        def isolated(i: int, exc: Exception) -> None:
            reason = _reason(lines[i], exc)
            errors.append(DecodeError(*locate(int(index[i])), reason, str(exc)[:200]))

        split_until_isolated(0, len(lines), attempt, isolated, _PARSE_ERRORS)


def _reason(line: bytes, exc: Exception) -> DecodeReason:
    """Why one line failed: pyarrow's reader refuses a string that is not UTF-8 too."""
    if not is_utf8(line):
        return DecodeReason.INVALID_UTF8
    if "conversion" in str(exc).lower() or isinstance(
        exc, (pa.ArrowNotImplementedError, OverflowError)
    ):
        return DecodeReason.TYPE_MISMATCH
    return DecodeReason.INVALID_CSV
