"""The warehouse's part of `mic-pipeline trace` (read-only, index lookups only).

SQL: each event table by its primary key `event_id` (four lookups), `quarantined_rows` by its primary
key (table, event_id), `dead_letters` by `ix_dead_letters_event_id`; for a company, the event tables
by their `company_id` index, `dead_letters` by `ix_dead_letters_key_prefix` (the record key is the
company id) and the quarantined rows since T. Parquet: the sink's claim index
`<warehouse>/_index/event_ids.db` (primary key (table, event_id): the enriched record that claimed the
id and its quarantine status), then the data file whose name covers that record's offset in the
event's `event_date=` directory (a listing of one directory), or the compacted file of that day whose
`event_id` column holds it, the `released+...` file, or the `_quarantine/` file.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mic_pipeline.ops.warehouse_probe import as_utc
from schemas.topics import Family
from sinks.sql.tables import UtcDateTime

CLAIMS = Path("_index") / "event_ids.db"
STATUS_NAMES = {None: "landed", "q": "quarantined", "r": "released"}


def _iso(value: Any) -> str | None:
    when = as_utc(value)
    return None if when is None else when.isoformat()


@dataclass(frozen=True)
class SqlFindings:
    """What the SQL warehouse holds of one event (`available` False: no SQL warehouse there)."""

    available: bool
    rows: tuple[dict[str, Any], ...] = ()
    dead_letters: tuple[dict[str, Any], ...] = ()
    quarantined: tuple[dict[str, Any], ...] = ()
    error: str | None = None


def _engine(database_url: str) -> Any:
    """A read-only-use engine, or None when the URL names a SQLite file that does not exist."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    sqlite_file = url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:"
    if sqlite_file and not Path(str(url.database)).exists():
        return None
    return sa.create_engine(database_url, pool_pre_ping=False)


def sql_event(database_url: str, event_id: str) -> SqlFindings:
    """The event rows, dead letters and quarantined rows of `event_id` in the SQL warehouse."""
    import sqlalchemy as sa

    engine = _engine(database_url)
    if engine is None:
        return SqlFindings(False)
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            rows = []
            for family in Family:
                if family.table not in tables:
                    continue
                found = connection.execute(
                    sa.text(
                        f"SELECT event_type, occurred_at, company_id, landed_at FROM {family.table} "
                        "WHERE event_id = :id"
                    ),
                    {"id": event_id},
                ).first()
                if found is not None:
                    rows.append(
                        {
                            "table": family.table,
                            "event_type": found.event_type,
                            "company_id": found.company_id,
                            "occurred_at": _iso(found.occurred_at),
                            "landed_at": _iso(found.landed_at),
                        }
                    )
            letters = _dead_letters(connection, tables, "event_id = :id", {"id": event_id})
            kept = _quarantined(connection, tables, event_id=event_id)
    except sa.exc.SQLAlchemyError as error:
        return SqlFindings(True, error=str(getattr(error, "orig", None) or error).strip().splitlines()[0])
    finally:
        engine.dispose()
    return SqlFindings(True, tuple(rows), tuple(letters), tuple(kept))


def _dead_letters(
    connection: Any, tables: set[str], where: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    if "dead_letters" not in tables:
        return []
    query = sa.text(
        "SELECT reason, detail, event_id, event_type, original_topic, original_partition, original_offset, "
        "original_key, failed_at, deadletter_partition, deadletter_offset FROM dead_letters "
        f"WHERE {where} ORDER BY failed_at, original_topic, original_partition, original_offset"
    )
    if "since" in params:
        query = query.bindparams(sa.bindparam("since", type_=UtcDateTime()))
    found = connection.execute(query, params).all()
    return [
        {
            "reason": r.reason,
            "detail": r.detail,
            "event_id": r.event_id,
            "event_type": r.event_type,
            "failed_at": _iso(r.failed_at),
            "original": {
                "topic": r.original_topic,
                "partition": r.original_partition,
                "offset": r.original_offset,
            },
            "key": r.original_key,
            "deadletter": {"partition": r.deadletter_partition, "offset": r.deadletter_offset},
        }
        for r in found
    ]


def _quarantined(
    connection: Any, tables: set[str], *, event_id: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    if "quarantined_rows" not in tables:
        return []
    if event_id is not None:
        names = ", ".join(f"'{family.table}'" for family in Family)
        query = f"WHERE table_name IN ({names}) AND event_id = :id"
        params: dict[str, Any] = {"id": event_id}
    else:
        query, params = "WHERE quarantined_at >= :since", {"since": since}
    statement = sa.text(
        "SELECT table_name, event_id, event_type, topic, partition, record_offset, failures, record, "
        f"quarantined_at FROM quarantined_rows {query} ORDER BY quarantined_at"
    )
    if since is not None:
        statement = statement.bindparams(sa.bindparam("since", type_=UtcDateTime()))
    found = connection.execute(statement, params).all()
    return [
        {
            "sink": "sql",
            "table": r.table_name,
            "event_id": r.event_id,
            "event_type": r.event_type,
            "enriched": {"topic": r.topic, "partition": r.partition, "offset": r.record_offset},
            "failures": _failures(r.failures),
            "quarantined_at": _iso(r.quarantined_at),
            "record": r.record,
        }
        for r in found
    ]


def _failures(text: str) -> list[str]:
    try:
        failures = json.loads(text)
    except ValueError:
        return [text]
    if not isinstance(failures, list):
        return [text]
    return [
        f"{f.get('expectation')}({f.get('column')}) = {f.get('value')}" if isinstance(f, dict) else str(f)
        for f in failures
    ]


def sql_company(database_url: str, inn: str, since: datetime, limit: int) -> SqlFindings:
    """A company's event rows landed, its dead letters and its quarantined rows since `since`."""
    import sqlalchemy as sa

    from sinks.sql.tables import KEY_PREFIX

    engine = _engine(database_url)
    if engine is None:
        return SqlFindings(False)
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            rows: list[dict[str, Any]] = []
            for family in Family:
                if family.table not in tables:
                    continue
                query = sa.text(
                    f"SELECT event_id, event_type, occurred_at, landed_at FROM {family.table} "
                    "WHERE company_id = :inn AND landed_at >= :since ORDER BY landed_at DESC LIMIT :limit"
                ).bindparams(sa.bindparam("since", type_=UtcDateTime()))
                found = connection.execute(query, {"inn": inn, "since": since, "limit": limit}).all()
                rows.extend(
                    {
                        "table": family.table,
                        "event_id": r.event_id,
                        "event_type": r.event_type,
                        "occurred_at": _iso(r.occurred_at),
                        "landed_at": _iso(r.landed_at),
                    }
                    for r in found
                )
            where = (
                f"substr(original_key, 1, {KEY_PREFIX}) = :prefix AND original_key = :inn "
                "AND failed_at >= :since"
            )
            params = {"prefix": inn[:KEY_PREFIX], "inn": inn, "since": since}
            letters = _dead_letters(connection, tables, where, params)
            recent = _quarantined(connection, tables, since=since)
            kept = [q for q in recent if _company_of(q["record"]) == inn]
    except sa.exc.SQLAlchemyError as error:
        return SqlFindings(True, error=str(getattr(error, "orig", None) or error).strip().splitlines()[0])
    finally:
        engine.dispose()
    return SqlFindings(True, tuple(rows), tuple(letters), tuple(kept))


def _company_of(record: str) -> str | None:
    try:
        value = json.loads(record)
    except ValueError:
        return None
    company = value.get("company_id") if isinstance(value, dict) else None
    return company if isinstance(company, str) else None


# -- Parquet ----------------------------------------------------------------------------------------


def parquet_claims(root: Path, event_id: str) -> list[dict[str, Any]] | None:
    """The claim of `event_id` in each table of the Parquet dataset's index (None: no index there)."""
    path = root / CLAIMS
    if not path.exists():
        return None
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        found = connection.execute(
            "SELECT table_name, topic, partition, record_offset, status FROM claims "
            f"WHERE table_name IN ({', '.join('?' * len(Family))}) AND event_id = ?",
            (*(f.table for f in Family), event_id),
        ).fetchall()
    finally:
        connection.close()
    return [
        {
            "table": table,
            "enriched": {"topic": topic, "partition": partition, "offset": offset},
            "status": STATUS_NAMES.get(status, str(status)),
        }
        for table, topic, partition, offset, status in found
    ]


def parquet_file(root: Path, claim: dict[str, Any], event_id: str, event_date: str | None) -> str | None:
    """The file (relative to `root`) that holds the claimed row: by name from the claim's coordinates in
    the day's directory (all days when the date is unknown), a compacted file of that day holding the
    id, the released file, or the quarantine file. None when none does (yet)."""
    from sinks.parquet.layout import FileName

    table, where = claim["table"], claim["enriched"]
    if claim["status"] == "quarantined":
        name = f"{where['topic']}+{where['partition']}+{where['offset']:019d}.json"
        kept = root / "_quarantine" / table / name
        return str(kept.relative_to(root)) if kept.exists() else None
    if event_date:
        days = [root / table / f"event_date={event_date}"]
    else:
        days = sorted((root / table).glob("event_date=*"))
    released = f"released+{where['topic']}+{where['partition']}+{where['offset']:019d}.parquet"
    for day in days:
        if not day.is_dir():
            continue
        compacted = []
        for path in sorted(day.iterdir()):
            if path.name == released:
                return str(path.relative_to(root))
            parsed = FileName.parse(path.name)
            if (
                parsed is not None
                and (parsed.topic, parsed.partition) == (where["topic"], where["partition"])
                and parsed.first_offset <= where["offset"] <= parsed.last_offset
            ):
                return str(path.relative_to(root))
            if path.name.startswith("compacted+"):
                compacted.append(path)
        for path in compacted:
            if _holds(path, event_id):
                return str(path.relative_to(root))
    return None


def _holds(path: Path, event_id: str) -> bool:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["event_id"], filters=[("event_id", "=", event_id)])
    return bool(table.num_rows)
