"""The SQL sink: enriched events, current state and dead letters into SQLite or PostgreSQL.

One batch is one database transaction: event rows (idempotent by `event_id`), the rebuilt state rows
of every entity the batch touched, and nothing else. On PostgreSQL the rows are COPYed into a
session-local staging table and moved with `INSERT … SELECT … ON CONFLICT (event_id) DO NOTHING`;
on SQLite they are inserted with one `executemany` of `INSERT … ON CONFLICT DO NOTHING`.
Schema creation and upgrades are the Alembic migrations, run when the sink starts.

Errors: connection loss, lock timeouts and a full disk are `TransientSinkError` (the runner retries
the batch); a row the database refuses (a data or integrity error) is isolated by writing the rows
one by one, and only the refused ones are rejected to the dead-letter topic.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from mic_pipeline import metrics
from schemas.reasons import DeadLetterReason
from schemas.topics import DEADLETTER_TOPIC, Family
from sinks.batch import Batch, Rejected
from sinks.errors import TransientSinkError
from sinks.quality.verdict import QualityGate
from sinks.rows import Row, decode_batch
from sinks.sql.deadletters import dead_letter_row
from sinks.sql.migrate import upgrade
from sinks.sql.state import refresh_state
from sinks.sql.tables import EVENT_TABLES, dead_letters, entity_key, quarantined_batches

log = logging.getLogger(__name__)

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError, OSError)


def make_engine(url: str) -> Engine:
    """An engine for the warehouse: pre-ping (survives server restarts), SQLite in WAL mode.

    A SQLite file's directory is created if missing.
    """
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def _insert_ignoring_conflicts(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    keys = [c.name for c in table.primary_key.columns]
    build = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(build(table).on_conflict_do_nothing(index_elements=keys), list(rows))


def _copy_events(connection: Connection, table: Table, rows: Sequence[Row]) -> None:
    """PostgreSQL: COPY into a staging table, then insert what is not there yet."""
    names = [c.name for c in table.columns]
    stage = f"stage_{table.name}"
    column_list = ", ".join(names)
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table.name}) ON COMMIT DELETE ROWS")
        with cursor.copy(f"COPY {stage} ({column_list}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[name] for name in names])
        cursor.execute(
            f"INSERT INTO {table.name} ({column_list}) SELECT {column_list} FROM {stage} "
            "ON CONFLICT (event_id) DO NOTHING"
        )


def insert_events(connection: Connection, family: Family, rows: Sequence[Row]) -> None:
    """Insert event rows of `family`, ignoring `event_id`s already present (one transaction)."""
    table = EVENT_TABLES[family]
    if connection.dialect.name == "postgresql":
        _copy_events(connection, table, rows)
    else:
        _insert_ignoring_conflicts(connection, table, rows)


class SqlSink:
    """Lands enriched topics and the dead-letter topic of one pipeline (`Sink` protocol)."""

    name = "sql"

    def __init__(
        self,
        engine: Engine,
        families_by_topic: dict[str, Family],
        deadletter_topic: str,
        gate: QualityGate | None = None,
    ) -> None:
        self.engine = engine
        self.families_by_topic = families_by_topic
        self.deadletter_topic = deadletter_topic
        self.gate = gate
        upgrade(engine)

    @classmethod
    def for_pipeline(
        cls, database_url: str, topic: Callable[[str], str], gate: QualityGate | None = None
    ) -> SqlSink:
        """The sink for the physical topics produced by `topic` (e.g. `Settings.topic`)."""
        families = {topic(family.enriched_topic): family for family in Family}
        return cls(make_engine(database_url), families, topic(DEADLETTER_TOPIC), gate)

    def write(self, batch: Batch) -> list[Rejected]:
        try:
            if batch.topic == self.deadletter_topic:
                self._land_dead_letters(batch)
                return []
            return self._land_events(self.families_by_topic[batch.topic], batch)
        except TRANSIENT_DB_ERRORS as exc:
            raise TransientSinkError(f"database unavailable: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()

    def _land_dead_letters(self, batch: Batch) -> None:
        rows = {}
        for record in batch.records:
            row = dead_letter_row(record)
            rows[(row["original_topic"], row["original_partition"], row["original_offset"])] = row
        with self.engine.begin() as connection:
            _insert_ignoring_conflicts(connection, dead_letters, list(rows.values()))
        metrics.ROWS_WRITTEN.labels(sink=self.name, table=dead_letters.name).inc(len(rows))

    def _land_events(self, family: Family, batch: Batch) -> list[Rejected]:
        decoded = decode_batch(family, batch)
        metrics.DUPLICATES.labels(family=family.value).inc(decoded.duplicates)
        if not decoded.rows:
            return decoded.rejected
        verdict = self.gate.check(family, decoded.rows) if self.gate else None
        if verdict is not None and not verdict.passed:
            metrics.QUALITY_GATE.labels(table=family.table, result="quarantined").inc()
            self._quarantine(family, batch, [r.value for r in decoded.sources], verdict.reason)
            return decoded.rejected
        if verdict is not None:
            metrics.QUALITY_GATE.labels(table=family.table, result="passed").inc()
        try:
            self._land_rows(family, decoded.rows)
            return decoded.rejected
        except (DataError, IntegrityError) as exc:
            log.warning("batch refused (%s); isolating the refused rows", exc.orig)
        refused = self._land_rows_one_by_one(family, decoded.rows)
        return decoded.rejected + [
            Rejected(
                source,
                DeadLetterReason.SCHEMA_VIOLATION,
                f"database refused the row: {error}",
                row["event_id"],
                row["event_type"],
            )
            for row, source, error in zip(decoded.rows, decoded.sources, refused, strict=True)
            if error is not None
        ]

    def _land_rows(self, family: Family, rows: Sequence[Row]) -> None:
        key = entity_key(family)
        with self.engine.begin() as connection:
            insert_events(connection, family, rows)
            refresh_state(connection, family, (row[key] for row in rows))
        metrics.ROWS_WRITTEN.labels(sink=self.name, table=family.table).inc(len(rows))

    def _land_rows_one_by_one(self, family: Family, rows: Sequence[Row]) -> list[str | None]:
        errors: list[str | None] = []
        for row in rows:
            try:
                self._land_rows(family, [row])
                errors.append(None)
            except (DataError, IntegrityError) as exc:
                errors.append(str(exc.orig))
            except DBAPIError as exc:
                if isinstance(exc, TRANSIENT_DB_ERRORS):
                    raise
                errors.append(str(exc.orig))
        return errors

    def _quarantine(self, family: Family, batch: Batch, values: Sequence[bytes], reason: str) -> None:
        row = {
            "topic": batch.topic,
            "partition": batch.partition,
            "first_offset": batch.first_offset,
            "last_offset": batch.last_offset,
            "table_name": family.table,
            "record_count": len(values),
            "reason": reason,
            "records": "\n".join(value.decode("utf-8") for value in values),
            "quarantined_at": dt.datetime.now(dt.UTC),
        }
        with self.engine.begin() as connection:
            _insert_ignoring_conflicts(connection, quarantined_batches, [row])
        log.error(
            "quarantined %s[%d] %d..%d: %s",
            batch.topic,
            batch.partition,
            batch.first_offset,
            batch.last_offset,
            reason,
        )
