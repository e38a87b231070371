"""SQLAlchemy Core tables of the SQL warehouse (the Alembic migrations create exactly these).

Event tables are generated from `schemas.warehouse` (one typed column per enriched key, primary key
`event_id`). Current-state tables hold one row per entity, recomputed from the event rows (see
`sinks.sql.state`). `dead_letters` is keyed by the original coordinates, `quarantined_rows` by table
and event id (one row per event the gate or the database kept out), so replays never add rows.
`quarantined_batches` (whole batches, before revision 0003) is kept readable for old data.

Every event table also has `landed_at` (when the sink inserted the row) with an index, for
`status`'s freshness; `dead_letters` is indexed by `event_id` and by `original_key` (the company id),
for `mic-pipeline trace` (revision 0004).

Types: money is NUMERIC(18,2) on every engine (SQLite keeps up to 15 significant digits exactly, which
covers the contract's <= 10^13 with 2 decimals; reads are rounded back to scale 2); timestamps are
`UtcDateTime` (timestamptz on PostgreSQL, UTC text on SQLite, always returned tz-aware UTC).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    func,
)
from sqlalchemy.types import TypeEngine

from schemas.topics import Family
from schemas.warehouse import ColumnKind, columns

metadata = MetaData()


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A tz-aware UTC timestamp on every engine (naive values are rejected on bind)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: warehouse timestamps must be tz-aware")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def money() -> Numeric[Any]:
    """The money type: exact NUMERIC(18,2)."""
    return Numeric(18, 2, asdecimal=True)


ID = String(64)
INN = String(12)
ENUM = String(40)

_KIND_TYPES: dict[ColumnKind, TypeEngine[Any] | type[TypeEngine[Any]]] = {
    "string": Text,
    "enum": ENUM,
    "int": BigInteger,
    "date": Date,
    "timestamp": UtcDateTime,
    "rate": Double,
}

_SHORT_STRINGS = {"event_id": String(36), "source": String(64), "trace_id": String(64)}
_INN_COLUMNS = {"company_id", "manufacturer_id", "buyer_id", "debtor_id"}
_ENTITY_KEYS = {
    Family.MEMBER: "company_id",
    Family.ORDER: "order_id",
    Family.PATENT: "patent_id",
    Family.FACTORING: "request_id",
}


def _column_type(name: str, kind: ColumnKind) -> TypeEngine[Any] | type[TypeEngine[Any]]:
    if kind == "money":
        return money()
    if name in _SHORT_STRINGS:
        return _SHORT_STRINGS[name]
    if name in _INN_COLUMNS:
        return INN
    if name in _ENTITY_KEYS.values():
        return ID
    return _KIND_TYPES[kind]


def entity_key(family: Family) -> str:
    """The column identifying the entity an event of `family` is about."""
    return _ENTITY_KEYS[family]


LANDED_AT = "landed_at"
"""The sink-side column after the enriched record's columns: when the SQL sink inserted the row (UTC;
NULL for rows landed before revision 0004). A replay keeps the first value (the insert is ignored)."""


def _event_table(family: Family) -> Table:
    table_columns = [
        Column(c.name, _column_type(c.name, c.kind), primary_key=c.name == "event_id", nullable=c.nullable)
        for c in columns(family)
    ]
    table_columns.append(Column(LANDED_AT, UtcDateTime, nullable=True))
    name = family.table
    indexes = [Index(f"ix_{name}_occurred_at", "occurred_at"), Index(f"ix_{name}_event_type", "event_type")]
    indexes.append(Index(f"ix_{name}_landed_at", LANDED_AT))
    key = entity_key(family)
    indexes.append(Index(f"ix_{name}_{key}", key, "occurred_at"))
    if key != "company_id":
        indexes.append(Index(f"ix_{name}_company_id", "company_id"))
    return Table(name, metadata, *table_columns, *indexes)


EVENT_TABLES: dict[Family, Table] = {family: _event_table(family) for family in Family}

companies = Table(
    "companies",
    metadata,
    Column("company_id", INN, primary_key=True),
    Column("name", Text),
    Column("kind", ENUM),
    Column("status", ENUM),
    Column("region_code", ENUM),
    Column("sector", ENUM),
    Column("size", ENUM),
    Column("state_corporation", ENUM),
    Column("membership", ENUM, nullable=False),
    Column("first_joined_at", UtcDateTime),
    Column("last_joined_at", UtcDateTime),
    Column("left_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_companies_region_status", "region_code", "status"),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", ID, primary_key=True),
    Column("company_id", INN, nullable=False),
    Column("industry", ENUM),
    Column("title", Text),
    Column("quantity", BigInteger),
    Column("budget_rub", money()),
    Column("deadline", Date),
    Column("manufacturer_id", INN),
    Column("amount_rub", money()),
    Column("cancel_reason", Text),
    Column("status", ENUM, nullable=False),
    Column("placed_at", UtcDateTime),
    Column("accepted_at", UtcDateTime),
    Column("completed_at", UtcDateTime),
    Column("cancelled_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_orders_company_id", "company_id"),
    Index("ix_orders_status", "status"),
)

patents = Table(
    "patents",
    metadata,
    Column("patent_id", ID, primary_key=True),
    Column("company_id", INN, nullable=False),
    Column("kind", ENUM),
    Column("title", Text),
    Column("offer", ENUM),
    Column("price_rub", money()),
    Column("status", ENUM, nullable=False),
    Column("deal_count", Integer, nullable=False),
    Column("license_count", Integer, nullable=False),
    Column("deal_amount_rub", money()),
    Column("buyer_id", INN),
    Column("listed_at", UtcDateTime),
    Column("last_deal_at", UtcDateTime),
    Column("sold_at", UtcDateTime),
    Column("withdrawn_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_patents_company_id", "company_id"),
    Index("ix_patents_status", "status"),
)

factoring_requests = Table(
    "factoring_requests",
    metadata,
    Column("request_id", ID, primary_key=True),
    Column("company_id", INN, nullable=False),
    Column("debtor_id", INN),
    Column("invoice_amount_rub", money()),
    Column("due_date", Date),
    Column("advance_rub", money()),
    Column("fee_rate", Double),
    Column("repaid_rub", money()),
    Column("outstanding_rub", money()),
    Column("status", ENUM, nullable=False),
    Column("requested_at", UtcDateTime),
    Column("funded_at", UtcDateTime),
    Column("repaid_at", UtcDateTime),
    Column("defaulted_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_factoring_requests_company_id", "company_id"),
    Index("ix_factoring_requests_status", "status"),
)

STATE_TABLES: dict[Family, Table] = {
    Family.MEMBER: companies,
    Family.ORDER: orders,
    Family.PATENT: patents,
    Family.FACTORING: factoring_requests,
}

KEY_PREFIX = 20
"""`dead_letters` is indexed on the first characters of `original_key` (a company id has 10 or 12): a
whole key could be too long for a PostgreSQL index entry. Query with `substr(original_key, 1, 20)`."""

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("original_topic", String(249), primary_key=True),
    Column("original_partition", Integer, primary_key=True),
    Column("original_offset", BigInteger, primary_key=True),
    Column("reason", ENUM, nullable=False),
    Column("detail", Text, nullable=False),
    Column("event_id", String(64)),
    Column("event_type", String(64)),
    Column("original_key", Text),
    Column("original_value", Text),
    Column("original_encoding", String(16)),
    Column("failed_at", UtcDateTime),
    Column("deadletter_partition", Integer, nullable=False),
    Column("deadletter_offset", BigInteger, nullable=False),
    Index("ix_dead_letters_reason", "reason"),
    Index("ix_dead_letters_failed_at", "failed_at"),
    Index("ix_dead_letters_event_id", "event_id"),
)

Index("ix_dead_letters_key_prefix", func.substr(dead_letters.c.original_key, 1, KEY_PREFIX))

quarantined_batches = Table(
    "quarantined_batches",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("first_offset", BigInteger, primary_key=True),
    Column("last_offset", BigInteger, nullable=False),
    Column("table_name", String(64), nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("records", Text, nullable=False),
    Column("quarantined_at", UtcDateTime, nullable=False),
)

quarantined_rows = Table(
    "quarantined_rows",
    metadata,
    Column("table_name", String(64), primary_key=True),
    Column("event_id", String(80), primary_key=True),
    Column("event_type", Text),
    Column("topic", String(249), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("record_offset", BigInteger, nullable=False),
    Column("failures", Text, nullable=False),
    Column("record", Text, nullable=False),
    Column("quarantined_at", UtcDateTime, nullable=False),
    Index("ix_quarantined_rows_quarantined_at", "quarantined_at"),
)
"""`event_id` is the row's event id when it is a printable id of at most 80 characters, else
`sha256:<hex>` of it (see `sinks.quarantine.event_key`); `failures` is a JSON list of
`{expectation, column, rule, value}`; `record` the enriched record as consumed (JSON text)."""

quality_results = Table(
    "quality_results",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("table_name", String(64), primary_key=True),
    Column("expectation", String(200), primary_key=True),
    Column("success", Boolean, nullable=False),
    Column("unexpected_count", BigInteger),
    Column("element_count", BigInteger),
    Column("details", Text),
    Column("checked_at", UtcDateTime, nullable=False),
    Index("ix_quality_results_checked_at", "checked_at"),
)
