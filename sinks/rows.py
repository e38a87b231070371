"""Decoding of enriched records (`schemas/warehouse.py`) into typed warehouse rows.

A row is a dict keyed by `column_names(family)` with Python values: `Decimal` (money, exactly two
decimals, >= 0), `datetime.date`, tz-aware UTC `datetime`, `int`, `float` (rate) and `str`.
Every key of the enriched object must be present (null allowed where the column is nullable) and no
other key may appear, and every value must be storable in both warehouses (money exactly two
decimals within NUMERIC(18,2), integers within 64 bits). Anything else raises `TerminalRecordError`:
`malformed` when the bytes are not a JSON object, `schema_violation` when the object does not have
the enriched-record shape. Whether a storable value is *valid* (the contract's ranges) is the
quality gate's decision (`sinks.quality`), per row.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, SupportsIndex

import msgspec
import orjson

from schemas.reasons import DeadLetterReason
from schemas.topics import Family
from schemas.warehouse import ColumnKind, column_names, columns
from sinks.batch import Batch, Rejected, SourceRecord
from sinks.errors import TerminalRecordError

Row = dict[str, Any]

STORABLE_MONEY = Decimal(10) ** 16
"""NUMERIC(18,2) and Arrow decimal128(18, 2) hold amounts below 10^16."""
INT64 = (-(2**63), 2**63 - 1)

_PYTHON_TYPES: dict[ColumnKind, Any] = {
    "string": str,
    "enum": str,
    "int": int,
    "money": Decimal,
    "date": dt.date,
    "timestamp": Annotated[dt.datetime, msgspec.Meta(tz=True)],
    "rate": float,
}


@cache
def _row_type(family: Family) -> type[msgspec.Struct]:
    fields = []
    for column in columns(family):
        python_type = _PYTHON_TYPES[column.kind]
        fields.append((column.name, python_type | None if column.nullable else python_type))
    return msgspec.defstruct(
        f"Enriched{family.name.title()}Row", fields, forbid_unknown_fields=True, kw_only=True
    )


@cache
def _decoder(family: Family) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(_row_type(family))


@cache
def _money_columns(family: Family) -> tuple[str, ...]:
    return tuple(c.name for c in columns(family) if c.kind == "money")


@cache
def _int_columns(family: Family) -> tuple[str, ...]:
    return tuple(c.name for c in columns(family) if c.kind == "int")


@cache
def _timestamp_columns(family: Family) -> tuple[str, ...]:
    return tuple(c.name for c in columns(family) if c.kind == "timestamp")


def check_money(name: str, value: Decimal) -> None:
    """Raise `TerminalRecordError` unless `value` is storable money: finite, exactly 2 decimals,
    below 10^16 in magnitude (its contract range, 0..10^13, is a quality-gate check)."""
    exponent = value.as_tuple().exponent
    if not value.is_finite() or exponent != -2 or abs(value) >= STORABLE_MONEY:
        raise TerminalRecordError(
            DeadLetterReason.SCHEMA_VIOLATION,
            f"enriched record: {name}={value} is not storable money (exactly 2 decimals, below 10^16)",
        )


def check_int(name: str, value: int) -> None:
    """Raise `TerminalRecordError` unless `value` fits a 64-bit integer column."""
    if not INT64[0] <= value <= INT64[1]:
        raise TerminalRecordError(
            DeadLetterReason.SCHEMA_VIOLATION, f"enriched record: {name}={value} does not fit 64 bits"
        )


def decode_row(family: Family, raw: bytes) -> Row:
    """The typed row of one enriched record of `family`; raises `TerminalRecordError`."""
    try:
        struct = _decoder(family).decode(raw)
    except msgspec.ValidationError as exc:
        raise TerminalRecordError(
            DeadLetterReason.SCHEMA_VIOLATION, f"enriched record of {family.table} does not match: {exc}"
        ) from exc
    except msgspec.DecodeError as exc:
        raise TerminalRecordError(
            DeadLetterReason.MALFORMED, f"enriched record of {family.table} is not JSON: {exc}"
        ) from exc
    row: Row = msgspec.structs.asdict(struct)
    for name in _money_columns(family):
        value = row[name]
        if value is not None:
            check_money(name, value)
    for name in _int_columns(family):
        value = row[name]
        if value is not None:
            check_int(name, value)
    for name in _timestamp_columns(family):
        value = row[name]
        if value is not None:
            row[name] = value.astimezone(dt.UTC)
    return row


def event_date(row: Row) -> dt.date:
    """The UTC calendar date of the row's `occurred_at` (the Parquet partition value)."""
    occurred_at: dt.datetime = row["occurred_at"]
    return occurred_at.astimezone(dt.UTC).date()


def peek_identity(raw: bytes) -> tuple[str | None, str | None]:
    """`event_id` and `event_type` of a record when they can be read at all (for dead letters)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(value, dict):
        return None, None
    event_id, event_type = value.get("event_id"), value.get("event_type")
    return (
        event_id if isinstance(event_id, str) else None,
        event_type if isinstance(event_type, str) else None,
    )


@dataclass(frozen=True)
class DecodedBatch:
    """A batch split into landable rows (first occurrence per `event_id`) and rejected records."""

    rows: list[Row]
    sources: list[SourceRecord]
    rejected: list[Rejected]
    duplicates: int


def decode_batch(family: Family, batch: Batch) -> DecodedBatch:
    """Decode every record of `batch`; undecodable ones become `Rejected`, repeats are dropped."""
    rows: list[Row] = []
    sources: list[SourceRecord] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    duplicates = 0
    for record in batch.records:
        try:
            row = decode_row(family, record.value)
        except TerminalRecordError as exc:
            event_id, event_type = peek_identity(record.value)
            rejected.append(Rejected(record, exc.reason, exc.detail, event_id, event_type))
            continue
        if row["event_id"] in seen:
            duplicates += 1
            continue
        seen.add(row["event_id"])
        rows.append(row)
        sources.append(record)
    return DecodedBatch(rows, sources, rejected, duplicates)


def decode_group(family: Family, batches: Sequence[Batch]) -> tuple[DecodedBatch, list[list[Rejected]]]:
    """Decode batches of one family (several partitions) into one set of rows (first occurrence per
    `event_id` across them) and the rejected records of each batch."""
    rows: list[Row] = []
    sources: list[SourceRecord] = []
    seen: set[str] = set()
    duplicates = 0
    rejected: list[list[Rejected]] = []
    for batch in batches:
        decoded = decode_batch(family, batch)
        rejected.append(decoded.rejected)
        duplicates += decoded.duplicates
        for row, source in zip(decoded.rows, decoded.sources, strict=True):
            if row["event_id"] in seen:
                duplicates += 1
                continue
            seen.add(row["event_id"])
            rows.append(row)
            sources.append(source)
    flat = [item for items in rejected for item in items]
    return DecodedBatch(Rows(family, rows), sources, flat, duplicates), rejected


class Rows(list[Row]):
    """Rows of one table as `decode_row` makes them -- every row's keys are `column_names(family)`,
    in that order (checked for every row when transposed) -- which transpose into columns once
    (`column_lists`): the quality gate and the writer of a checkpoint read the same columns. Any
    change to the list makes them again; the row dicts themselves are the decoded records and are
    not edited."""

    def __init__(self, family: Family, rows: Iterable[Row] = ()) -> None:
        super().__init__(rows)
        self.family = family
        self._columns: list[tuple[Any, ...]] | None = None

    def columns(self) -> list[tuple[Any, ...]]:
        """The values column by column, in `column_names(family)` order."""
        if self._columns is None:
            names = column_names(self.family)
            for row in self:
                if tuple(row) != names:
                    raise ValueError(f"rows of {self.family.table} not made by decode_row: {list(row)}")
            # every row's values are in column order: one C-level transpose, no lookups by name
            values = [tuple(row.values()) for row in self]
            self._columns = list(zip(*values, strict=True)) if values else [() for _ in names]
        return self._columns

    def _changed(self) -> None:
        self._columns = None

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._changed()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._changed()

    def __iadd__(self, other: Iterable[Row]) -> Rows:  # type: ignore[override,misc]
        self._changed()
        super().__iadd__(other)
        return self

    def append(self, row: Row) -> None:
        super().append(row)
        self._changed()

    def extend(self, rows: Iterable[Row]) -> None:
        super().extend(rows)
        self._changed()

    def insert(self, index: SupportsIndex, row: Row) -> None:
        super().insert(index, row)
        self._changed()

    def pop(self, index: SupportsIndex = -1) -> Row:
        self._changed()
        return super().pop(index)

    def remove(self, row: Row) -> None:
        super().remove(row)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._changed()

    def reverse(self) -> None:
        super().reverse()
        self._changed()


def column_lists(names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows' values column by column, in the order of `names` (C-level loops: `itemgetter`
    per row, then a transpose), for the columnar writers (Arrow, pandas, executemany). `Rows` of
    every column of their table are transposed once and the columns shared."""
    if isinstance(rows, Rows) and tuple(names) == column_names(rows.family):
        return rows.columns()
    if not rows:
        return [() for _ in names]
    if len(names) == 1:
        return [tuple(row[names[0]] for row in rows)]
    return list(zip(*map(operator.itemgetter(*names), rows), strict=True))
