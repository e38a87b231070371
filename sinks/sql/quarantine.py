"""The SQL sink's quarantine: `quarantined_rows` (one row per event kept out) and the legacy
`quarantined_batches` (whole batches, before revision 0003; read-only now).

Exactly once per event across the event table and the quarantine, in every transaction that lands a
batch: a row whose `event_id` is already quarantined does not land (the first decision for an event
stands until it is released), and a row is not quarantined when its `event_id` already landed.
A release moves a row from the quarantine into its event table in one transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, exists, insert, select, text, update

from schemas.topics import Family
from sinks.quarantine import QuarantinedRow, escape, event_key
from sinks.sql.tables import EVENT_TABLES, quarantined_batches, quarantined_rows

_CHUNK = 500


def _row(entry: QuarantinedRow) -> dict[str, Any]:
    return {
        "table_name": entry.table,
        "event_id": entry.key,
        "event_type": escape(entry.event_type)[:200],
        "topic": entry.topic,
        "partition": entry.partition,
        "record_offset": entry.offset,
        "failures": orjson.dumps(list(entry.failures)).decode(),
        "record": entry.record,
        "quarantined_at": entry.quarantined_at,
    }


def _entry(row: Any) -> QuarantinedRow:
    record = str(row.record)
    try:
        event_id = str(orjson.loads(record)["event_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        event_id = str(row.event_id)
    return QuarantinedRow(
        table=row.table_name,
        topic=row.topic,
        partition=int(row.partition),
        offset=int(row.record_offset),
        event_id=event_id,
        event_type=str(row.event_type),
        failures=tuple(orjson.loads(row.failures)),
        record=record,
        quarantined_at=row.quarantined_at,
    )


def lock_quarantine(connection: Connection, family: Family) -> None:
    """PostgreSQL: serialise, per table, the transactions that quarantine rows with releases (so a
    release and a replay quarantining the same event never both win). SQLite serialises every
    writer already."""
    if connection.dialect.name == "postgresql":
        key = zlib.crc32(f"mic-quarantine:{family.table}".encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def any_quarantined(connection: Connection, family: Family) -> bool:
    """Whether `family`'s table has any quarantined row (cheap: the usual answer is no)."""
    query = select(quarantined_rows.c.event_id).where(quarantined_rows.c.table_name == family.table)
    return connection.execute(query.limit(1)).first() is not None


def quarantined_ids(connection: Connection, family: Family, event_ids: Iterable[str]) -> set[str]:
    """Those of `event_ids` (valid ids) that are quarantined in `family`'s table."""
    ids = sorted({event_key(i) for i in event_ids})
    found: set[str] = set()
    column = quarantined_rows.c.event_id
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        query = select(column).where(quarantined_rows.c.table_name == family.table, column.in_(chunk))
        found.update(connection.execute(query).scalars())
    return found


def insert_quarantined(
    connection: Connection, family: Family, entries: Sequence[QuarantinedRow]
) -> list[QuarantinedRow]:
    """Quarantine `entries` unless their event already landed or is already quarantined; returns
    those added."""
    events = EVENT_TABLES[family]
    added: list[QuarantinedRow] = []
    for entry in entries:
        if entry.key == entry.event_id:
            landed = connection.execute(select(exists().where(events.c.event_id == entry.event_id))).scalar()
            if landed:
                continue
        present = select(
            exists().where(
                quarantined_rows.c.table_name == entry.table, quarantined_rows.c.event_id == entry.key
            )
        )
        if connection.execute(present).scalar():
            continue
        connection.execute(insert(quarantined_rows), [_row(entry)])
        added.append(entry)
    return added


def list_quarantined(engine: Engine, table: str | None = None) -> list[QuarantinedRow]:
    """Every quarantined row (of `table`), oldest first."""
    query = select(quarantined_rows).order_by(
        quarantined_rows.c.quarantined_at, quarantined_rows.c.table_name, quarantined_rows.c.event_id
    )
    if table is not None:
        query = query.where(quarantined_rows.c.table_name == table)
    with engine.connect() as connection:
        return [_entry(row) for row in connection.execute(query)]


def list_legacy_batches(engine: Engine, table: str | None = None) -> list[dict[str, Any]]:
    """The whole batches quarantined before per-row quarantine existed (read-only)."""
    query = select(quarantined_batches).order_by(quarantined_batches.c.quarantined_at)
    if table is not None:
        query = query.where(quarantined_batches.c.table_name == table)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def remove(connection: Connection, entry: QuarantinedRow) -> None:
    """Delete `entry` from the quarantine (inside the release's transaction)."""
    connection.execute(
        delete(quarantined_rows).where(
            quarantined_rows.c.table_name == entry.table, quarantined_rows.c.event_id == entry.key
        )
    )


def refail(engine: Engine, entry: QuarantinedRow, failures: Sequence[dict[str, str]]) -> None:
    """Record the failures of a release attempt that did not pass."""
    with engine.begin() as connection:
        connection.execute(
            update(quarantined_rows)
            .where(quarantined_rows.c.table_name == entry.table, quarantined_rows.c.event_id == entry.key)
            .values(failures=orjson.dumps(list(failures)).decode())
        )
