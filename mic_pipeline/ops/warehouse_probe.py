"""Reading the warehouse for `status`: freshness per family and sink, and the quality-gate records.

Read-only, by table name (the sinks own the schema): `<family>_events.landed_at` (indexed; rows
landed before the column existed have none and are not counted),
`quarantined_rows` (one row per event the quality gate or the database kept out),
`quarantined_batches` (legacy: whole batches kept out before per-row quarantine) and
`quality_results` (one row per expectation of each `mic-pipeline check` run). Event data shown
(ids, reasons) has its control characters escaped. A SQLite file that does not exist means no SQL
sink has run there (no SQL freshness is reported), an event table that does not exist yet "nothing
landed"; only a database that cannot be reached is an error.

Parquet freshness (`parquet_freshness`) is reported where the Parquet sink has run (its claim index
`<warehouse>/_index/event_ids.db` exists): the newest `landed_at` of a table is the largest
`landed_at` statistic in the footers of its newest files (a file's rows landed before its
modification time, so files older than the best value found are not opened: usually one footer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mic_pipeline.ops.verdict import FamilyFreshness, QualityGateStatus
from schemas.topics import Family

QUARANTINE_TABLE = "quarantined_batches"
QUARANTINED_ROWS_TABLE = "quarantined_rows"
QUALITY_RESULTS_TABLE = "quality_results"
MAX_QUALITY_DETAILS = 10


def as_utc(value: Any) -> datetime | None:
    """A database timestamp (datetime or ISO text; naive means UTC) as a tz-aware UTC datetime."""
    if value is None:
        return None
    parsed = (
        value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def freshness_of(family: Family, newest: Any, now: datetime, sink: str = "sql") -> FamilyFreshness:
    """A family's freshness from the newest `landed_at` read from its table (None: no rows)."""
    when = as_utc(newest)
    age = None if when is None else max(0.0, (now - when).total_seconds())
    return FamilyFreshness(family.value, family.table, when, age, sink)


def parquet_freshness(root: Path, now: datetime) -> tuple[FamilyFreshness, ...]:
    """Freshness of each table of the Parquet dataset at `root` (none when the sink never ran there)."""
    if not (root / "_index" / "event_ids.db").exists():
        return ()
    return tuple(freshness_of(f, _newest_landed(root / f.table), now, "parquet") for f in Family)


def _newest_landed(directory: Path) -> datetime | None:
    import pyarrow.parquet as pq

    files = []
    for path in directory.glob("event_date=*/*.parquet"):
        if not path.name.startswith((".", "_")):
            try:
                files.append((path.stat().st_mtime, path))
            except FileNotFoundError:  # compacted or rewritten meanwhile
                continue
    best: datetime | None = None
    for mtime, path in sorted(files, reverse=True):
        if best is not None and mtime < best.timestamp():
            break
        try:
            metadata = pq.ParquetFile(path).metadata
        except FileNotFoundError:
            continue
        newest = _column_max(metadata, "landed_at")
        if newest is not None and (best is None or newest > best):
            best = newest
    return best


def _column_max(metadata: Any, name: str) -> datetime | None:
    """The largest value of column `name` by the row groups' statistics (None: absent or no stats)."""
    names = [metadata.schema.column(i).name for i in range(metadata.num_columns)]
    if name not in names:
        return None
    index = names.index(name)
    found = None
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is not None and stats.has_min_max:
            value = as_utc(stats.max)
            found = value if found is None or (value is not None and value > found) else found
    return found


@dataclass(frozen=True)
class WarehouseReading:
    """What the warehouse said: freshness per family, quality-gate status, or why it could not say."""

    freshness: tuple[FamilyFreshness, ...]
    quality: QualityGateStatus
    error: str | None = None


def _sqlite_file_missing(database_url: str) -> bool:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    return not Path(url.database).exists()


def read_warehouse(database_url: str, now: datetime) -> WarehouseReading:
    """Freshness and quality-gate status from the warehouse at `database_url` (never raises for a
    missing or unreachable database: see `WarehouseReading.error`)."""
    if _sqlite_file_missing(database_url):
        return WarehouseReading((), QualityGateStatus(available=False))
    import sqlalchemy as sa

    engine = sa.create_engine(database_url, pool_pre_ping=False)
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            inspector = sa.inspect(connection)
            freshness = tuple(
                freshness_of(
                    family,
                    connection.execute(sa.text(f"SELECT max(landed_at) FROM {family.table}")).scalar()
                    if family.table in tables
                    and "landed_at" in {c["name"] for c in inspector.get_columns(family.table)}
                    else None,
                    now,
                )
                for family in Family
            )
            if not any(family.table in tables for family in Family):
                freshness = ()  # no SQL sink has created its tables here
            quality = _quality_status(connection, tables)
    except sa.exc.SQLAlchemyError as error:
        message = str(error.orig) if isinstance(error, sa.exc.DBAPIError) else str(error)
        return WarehouseReading((), QualityGateStatus(available=False), message.strip().splitlines()[0])
    finally:
        engine.dispose()
    return WarehouseReading(freshness, quality)


def _quarantined_rows(connection: Any, details: list[str]) -> int:
    """How many events are quarantined; one detail line per table (count, newest reason)."""
    import sqlalchemy as sa

    from sinks.quarantine import escape

    rows = connection.execute(
        sa.text(
            f"SELECT table_name, COUNT(*) AS n, MAX(quarantined_at) AS newest "
            f"FROM {QUARANTINED_ROWS_TABLE} GROUP BY table_name ORDER BY table_name"
        )
    ).all()
    for row in rows[:MAX_QUALITY_DETAILS]:
        latest = connection.execute(
            sa.text(
                f"SELECT event_id, failures FROM {QUARANTINED_ROWS_TABLE} WHERE table_name = :table "
                "ORDER BY quarantined_at DESC LIMIT 1"
            ),
            {"table": row.table_name},
        ).one()
        details.append(
            f"quarantined {row.n} {row.table_name} rows (mic-pipeline quarantine list); latest "
            f"{escape(str(latest.event_id))}: {escape(str(latest.failures))[:300]}"
        )
    return sum(int(row.n) for row in rows)


def _quality_status(connection: Any, tables: set[str]) -> QualityGateStatus:
    """Quarantined batches (all kept ones) plus the failed expectations of the latest check run."""
    import sqlalchemy as sa

    if not tables & {QUARANTINE_TABLE, QUARANTINED_ROWS_TABLE, QUALITY_RESULTS_TABLE}:
        return QualityGateStatus(available=False)
    details: list[str] = []
    failures = 0
    if QUARANTINED_ROWS_TABLE in tables:
        failures += _quarantined_rows(connection, details)
    if QUARANTINE_TABLE in tables:
        rows = connection.execute(
            sa.text(
                f"SELECT table_name, topic, partition, first_offset, last_offset, reason "
                f"FROM {QUARANTINE_TABLE} ORDER BY quarantined_at DESC"
            )
        ).all()
        failures += len(rows)
        details.extend(
            f"quarantined {r.table_name} batch {r.topic}[{r.partition}] offsets "
            f"{r.first_offset}-{r.last_offset}: {r.reason}"
            for r in rows[:MAX_QUALITY_DETAILS]
        )
    if QUALITY_RESULTS_TABLE in tables:
        latest = connection.execute(
            sa.text(f"SELECT run_id FROM {QUALITY_RESULTS_TABLE} ORDER BY checked_at DESC LIMIT 1")
        ).scalar()
        if latest is not None:
            failed = connection.execute(
                sa.text(
                    f"SELECT table_name, expectation, unexpected_count FROM {QUALITY_RESULTS_TABLE} "
                    "WHERE run_id = :run AND NOT success ORDER BY table_name, expectation"
                ),
                {"run": latest},
            ).all()
            failures += len(failed)
            details.extend(
                f"check {r.table_name}: {r.expectation} failed ({r.unexpected_count} unexpected)"
                for r in failed[:MAX_QUALITY_DETAILS]
            )
    return QualityGateStatus(available=True, failures=failures, details=tuple(details))
