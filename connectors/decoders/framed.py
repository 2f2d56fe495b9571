"""The shape Avro and Protobuf share: records framed for a schema registry, or plain.

A record in the Confluent wire format is a zero magic byte, a 4-byte big-endian
schema id, then (for some formats) more framing, then the payload. A batch is
decoded in groups of records of one schema:

1. records are grouped by what names their schema (the schema id, and whatever
   the format adds to it); a record that is not framed is a ``bad_framing``
   error;
2. each group is read with a *plan*, made once per schema and kept; a schema
   the registry does not have is ``unknown_schema`` for its records, one it
   cannot give now ``registry_unavailable``;
3. a plan reads its group the fast way when it can (a columnar reader over the
   whole group, with numpy), else record by record; either way the columns are
   then typed to the table's (a value that does not convert: ``type_mismatch``)
   and the groups put back in batch order.

Plain records (the schema given in ``format_options``) are one group with one
plan. Each format keeps only what is its own: its plans, its framing beyond
the schema id, and its record-by-record reader.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import ClassVar, Generic, Protocol, TypeVar

import numpy as np
import pyarrow as pa

from connectors.base import DecodeError, Decoder, DecodeReason, Locator
from connectors.decoders.columns import CAST_ERRORS, coerce_columns, drop_failed, merge_pieces
from connectors.registry import (
    RegisteredSchema,
    Registry,
    RegistryUnavailable,
    UnknownSchema,
    registry_for,
    wire_ids,
)
from connectors.spec import DecoderSpec, FormatOptions

#: bytes before the payload: the magic byte and the schema id
WIRE_HEADER = 5

GroupKey = tuple[int, ...]
"""What names the schema of a group: (schema id, format-specific parts...)."""


class ColumnarReader(Protocol):
    def read(
        self, values: list[bytes], starts: np.ndarray
    ) -> tuple[list[pa.Array | None], np.ndarray]:
        """(one array per column, None for one the schema lacks; mask of good records).

        Raises an Arrow error (a string that is not UTF-8) to send the group record by record.
        """
        ...


class Plan(Protocol):
    """How to read records of one schema into the table's columns."""

    @property
    def columnar(self) -> ColumnarReader | None:
        """The fast reader of whole groups; None where the schema needs the slow path."""
        ...

    def complete(self, arrays: list[pa.Array | None], n: int) -> list[pa.Array]:
        """Columns the schema lacks filled in (a default, or nulls)."""
        ...


PlanT = TypeVar("PlanT", bound=Plan)
"""The plan type of one format, which its slow path reads format-specific parts of."""


class FramedDecoder(Decoder, Generic[PlanT]):
    """Base of the formats whose records carry a schema, through a registry or plain."""

    carries_schema = True
    #: the registry's name of the schema type (``AVRO``, ``PROTOBUF``)
    schema_type: ClassVar[str]
    #: the reason of a record the columnar reader found malformed, and its detail
    malformed: ClassVar[tuple[DecodeReason, str]]

    def __init__(self, spec: DecoderSpec, arrow_schema: pa.Schema):
        super().__init__(spec, arrow_schema)
        self._paths = {f.name: spec.paths.get(f.name, (f.name,)) for f in arrow_schema}
        self._plans: dict[GroupKey, PlanT] = {}
        self._registry: Registry | None = None
        self._plain: PlanT | None = None
        if not self.uses_registry(spec.options):
            self._plain = self._plain_plan(spec.options)
        elif spec.registry is None:
            raise ValueError(f"{self.name} without a schema needs kafka.schema_registry")
        else:
            self._registry = registry_for(spec.registry)

    @classmethod
    def record_schema(cls, options: FormatOptions, registered: RegisteredSchema | None):
        if registered is not None and registered.schema_type != cls.schema_type:
            raise ValueError(
                f"the registry's schema is {registered.schema_type}, not {cls.schema_type}"
            )
        return cls._record_schema(options, registered)

    # -- what each format provides -------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def _record_schema(cls, options: FormatOptions, registered: RegisteredSchema | None):
        """The record schema of the options, or of a registered schema of this type."""

    @abc.abstractmethod
    def _plain_plan(self, options: FormatOptions) -> PlanT:
        """The plan of plain records, whose schema the options give."""

    @abc.abstractmethod
    def _registered_plan(self, registered: RegisteredSchema, rest: tuple[int, ...]) -> PlanT:
        """The plan of a registered schema (``rest``: the group key after the schema id)."""

    @abc.abstractmethod
    def _read_one_by_one(
        self,
        plan: PlanT,
        values: list[bytes],
        positions: np.ndarray,
        starts: np.ndarray,
        locate: Locator,
        errors: list[DecodeError],
    ) -> tuple[list[pa.Array | None], np.ndarray]:
        """The slow path: the records at ``positions`` one at a time; (arrays, kept positions)."""

    def _group_keys(
        self,
        values: list[bytes],
        ids: np.ndarray,
        framed: np.ndarray,
        starts: np.ndarray,
        locate: Locator,
        errors: list[DecodeError],
    ) -> dict[GroupKey, Iterable[int]]:
        """Framed records by group key; sets where each payload ``starts``.

        By default the schema id is the whole key and the payload follows it.
        """
        starts[framed] = WIRE_HEADER
        return {(int(i),): np.flatnonzero(framed & (ids == i)) for i in np.unique(ids[framed])}

    # -- the batch -----------------------------------------------------------------

    def decode_values(
        self, values: list[bytes], locate: Locator
    ) -> tuple[pa.Table, np.ndarray, list[DecodeError]]:
        errors: list[DecodeError] = []
        starts = np.zeros(len(values), dtype=np.int64)
        if self._plain is not None:
            groups = [(self._plain, np.arange(len(values), dtype=np.int64))]
        else:
            groups = self._groups(values, starts, locate, errors)
        pieces: list[tuple[pa.Table, np.ndarray]] = []
        for plan, members in groups:
            rows, kept = self._read(plan, values, members, starts, locate, errors)
            if rows.num_rows:
                pieces.append((rows, kept))
        rows, positions = merge_pieces(pieces, self.arrow_schema)
        return rows, positions, errors

    def _groups(
        self,
        values: list[bytes],
        starts: np.ndarray,
        locate: Locator,
        errors: list[DecodeError],
    ) -> list[tuple[PlanT, np.ndarray]]:
        ids, framed = wire_ids(values)
        errors.extend(
            DecodeError(
                *locate(int(i)), DecodeReason.BAD_FRAMING, "not in the schema registry framing"
            )
            for i in np.flatnonzero(~framed)
        )
        groups = []
        for key, members in self._group_keys(values, ids, framed, starts, locate, errors).items():
            positions = np.sort(np.asarray(members, dtype=np.int64))
            try:
                plan = self._plan(key)
            except (UnknownSchema, RegistryUnavailable, ValueError) as exc:
                reason = (
                    DecodeReason.REGISTRY_UNAVAILABLE
                    if isinstance(exc, RegistryUnavailable)
                    else DecodeReason.UNKNOWN_SCHEMA
                )
                errors.extend(
                    DecodeError(*locate(int(i)), reason, str(exc)[:200]) for i in positions
                )
                continue
            groups.append((plan, positions))
        return groups

    def _plan(self, key: GroupKey) -> PlanT:
        """The plan of a group, made once from the registry's schema and kept."""
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        assert self._registry is not None
        schema_id, *rest = key
        registered = self._registry.schema(schema_id)
        if registered.schema_type != self.schema_type:
            raise UnknownSchema(
                f"schema id {schema_id} is {registered.schema_type}, not {self.schema_type}"
            )
        plan = self._plans[key] = self._registered_plan(registered, tuple(rest))
        return plan

    def _read(
        self,
        plan: PlanT,
        values: list[bytes],
        positions: np.ndarray,
        starts: np.ndarray,
        locate: Locator,
        errors: list[DecodeError],
    ) -> tuple[pa.Table, np.ndarray]:
        """The records at ``positions`` as typed rows: the fast path, else record by record."""
        if plan.columnar is not None:
            subset = values if len(positions) == len(values) else [values[i] for i in positions]
            try:
                arrays, good = plan.columnar.read(subset, starts[positions])
            except (*CAST_ERRORS, pa.ArrowException):
                pass  # invalid UTF-8 somewhere: find it record by record below
            else:
                arrays, positions, failed = drop_failed(arrays, good, positions)
                reason, detail = self.malformed
                errors.extend(DecodeError(*locate(int(i)), reason, detail) for i in failed)
                return self._typed(plan.complete(arrays, len(positions)), positions, locate, errors)
        arrays, positions = self._read_one_by_one(plan, values, positions, starts, locate, errors)
        return self._typed(plan.complete(arrays, len(positions)), positions, locate, errors)

    def _typed(
        self,
        arrays: list[pa.Array],
        positions: np.ndarray,
        locate: Locator,
        errors: list[DecodeError],
    ) -> tuple[pa.Table, np.ndarray]:
        """Columns converted to the table's types; a row that does not convert is dropped."""
        rows, keep, why = coerce_columns(arrays, self.arrow_schema)
        if keep is not None:
            errors.extend(
                DecodeError(*locate(int(i)), DecodeReason.TYPE_MISMATCH, w)
                for i, w in zip(positions[~keep], why, strict=False)
            )
            positions = positions[keep]
        return rows, positions
