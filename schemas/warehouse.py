"""Columns of the warehouse event rows: the single definition shared by the stream and the sinks.

The stream writes every valid event to `mic.<family>.enriched` as one flat JSON object whose keys are
exactly `columns(family)`, every key present (null where it does not apply). The sinks land those
objects as rows of `Family.table` in SQL and Parquet without any lookup.

Value encodings in the enriched JSON:
- `timestamp`: RFC 3339 in UTC with a `Z` suffix (the contract's `occurred_at`, normalised);
- `date`: `YYYY-MM-DD`;
- `money`: a JSON *string* with exactly two decimals (`"1250.00"`), so no float ever touches it;
- `rate`: a JSON number (`fee_rate`);
- `int`: a JSON integer; `string` / `enum`: JSON strings.

Member events carry the member's profile *as of this event* in the profile columns
(`name`, `kind`, `status`, `region_code`, `sector`, `size`, `state_corporation`): for
`member.updated` and `member.left` the stream fills the fields the event did not change from the
current profile; `changed_fields` lists (comma-separated, sorted) what a `member.updated` changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from schemas.topics import Family

ColumnKind = Literal["string", "enum", "int", "money", "date", "timestamp", "rate"]


@dataclass(frozen=True)
class Column:
    """One warehouse column: its name, kind and whether every row has a value."""

    name: str
    kind: ColumnKind
    nullable: bool = True


PROFILE_FIELDS: tuple[str, ...] = ("region_code", "sector", "size", "status", "state_corporation")
"""The enrichment columns of a company (contract, "Warehouse")."""

ENVELOPE_COLUMNS: tuple[Column, ...] = (
    Column("event_id", "string", nullable=False),
    Column("event_type", "enum", nullable=False),
    Column("schema_version", "int", nullable=False),
    Column("occurred_at", "timestamp", nullable=False),
    Column("source", "string", nullable=False),
    Column("company_id", "string", nullable=False),
    Column("trace_id", "string"),
)


def _profile(prefix: str = "") -> tuple[Column, ...]:
    return tuple(Column(f"{prefix}{name}", "enum") for name in PROFILE_FIELDS)


_PAYLOAD_COLUMNS: dict[Family, tuple[Column, ...]] = {
    Family.MEMBER: (
        Column("name", "string"),
        Column("kind", "enum"),
        *_profile(),
        Column("changed_fields", "string"),
        Column("reason", "string"),
    ),
    Family.ORDER: (
        Column("order_id", "string", nullable=False),
        Column("industry", "enum"),
        Column("title", "string"),
        Column("quantity", "int"),
        Column("budget_rub", "money"),
        Column("deadline", "date"),
        Column("manufacturer_id", "string"),
        Column("amount_rub", "money"),
        Column("reason", "string"),
        *_profile(),
        *_profile("manufacturer_"),
    ),
    Family.PATENT: (
        Column("patent_id", "string", nullable=False),
        Column("kind", "enum"),
        Column("title", "string"),
        Column("offer", "enum"),
        Column("price_rub", "money"),
        Column("buyer_id", "string"),
        Column("deal", "enum"),
        Column("amount_rub", "money"),
        *_profile(),
        *_profile("buyer_"),
    ),
    Family.FACTORING: (
        Column("request_id", "string", nullable=False),
        Column("debtor_id", "string"),
        Column("invoice_amount_rub", "money"),
        Column("due_date", "date"),
        Column("advance_rub", "money"),
        Column("fee_rate", "rate"),
        Column("amount_rub", "money"),
        Column("outstanding_rub", "money"),
        *_profile(),
        *_profile("debtor_"),
    ),
}


def columns(family: Family) -> tuple[Column, ...]:
    """All columns of `family`'s event rows, envelope first, in table order."""
    return ENVELOPE_COLUMNS + _PAYLOAD_COLUMNS[family]


@cache
def column_names(family: Family) -> tuple[str, ...]:
    """The keys of an enriched record of `family`, in table order."""
    return tuple(c.name for c in columns(family))
