"""The SQL sink: enriched events, current state and dead letters into SQLite or PostgreSQL.

One batch is one database transaction: event rows (idempotent by `event_id`), the rebuilt state rows
of every entity the batch touched, and nothing else. On PostgreSQL the rows are COPYed into a
session-local staging table and moved with `INSERT … SELECT … ON CONFLICT (event_id) DO NOTHING`;
on SQLite they are inserted with one `executemany` of `INSERT … ON CONFLICT DO NOTHING`.
Schema creation and upgrades are the Alembic migrations, run when the sink starts.

Before rows land, the quality gate screens them (`sinks.quarantine.screen`): a failing row is
quarantined alone in `quarantined_rows`, in the same transaction as the rest of its batch.

Errors: connection loss, lock timeouts and a full disk are `TransientSinkError` (the runner retries
the batch with backoff, and its health names the reason); this includes the schema upgrade, run
before the first batch (`prepare`), so a database that is down at start-up is retried like one that
goes down mid-run. A row the database refuses (a data or integrity error, from SQLAlchemy or from
psycopg's raw COPY cursor) is isolated by bisecting the batch (O(k log n) transactions for k refused
rows) and quarantined with the database's message; the rest lands. It is quarantined, not
dead-lettered, because it passed the contract's checks: the refusal is a property of this
warehouse (fixable, e.g. by a migration or a stricter gate), and a quarantined row can be released
into the table exactly once when it is fixed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from mic_pipeline import metrics
from schemas.topics import DEADLETTER_TOPIC, Family
from sinks.batch import Batch, Rejected, SourceRecord
from sinks.errors import TerminalRecordError, TransientSinkError, first_line, is_disk_full
from sinks.quality.verdict import QualityGate
from sinks.quarantine import (
    Outcome,
    QuarantinedRow,
    Screened,
    database_refusal,
    event_key,
    log_quarantined,
    quarantined,
    refailed,
    screen_all,
)
from sinks.rows import DecodedBatch, Row, column_lists, decode_group, decode_row
from sinks.sql import sqlite_compat
from sinks.sql.deadletters import dead_letter_row, unstorable_row
from sinks.sql.migrate import upgrade
from sinks.sql.quarantine import (
    any_quarantined,
    insert_quarantined,
    lock_quarantine,
    quarantined_ids,
    refail,
    remove,
)
from sinks.sql.state import refresh_state
from sinks.sql.tables import EVENT_TABLES, LANDED_AT, UtcDateTime, dead_letters, entity_key

log = logging.getLogger(__name__)

TRANSIENT_DB_ERRORS = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    OSError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
"""The database (or its disk) is unavailable for now: retry the batch."""
ROW_DB_ERRORS = (DataError, IntegrityError, psycopg.DataError, psycopg.IntegrityError)
"""The database refuses a row for good: isolate it (psycopg's own classes come from the raw COPY
cursor, SQLAlchemy's from everything else)."""


def unavailable(error: BaseException) -> TransientSinkError:
    """The transient error (with its health kind) of a database failure."""
    if is_disk_full(error):
        return TransientSinkError(f"disk full: {first_line(error)}", kind="disk")
    return TransientSinkError(f"database unavailable: {first_line(error)}", kind="database")


def make_engine(url: str) -> Engine:
    """An engine for the warehouse: pre-ping (survives server restarts), SQLite in WAL mode, its
    NULLs bound cheaply (`sinks.sql.sqlite_compat`).

    A SQLite file's directory is created if missing.
    """
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sqlite_compat.install()  # NULLs bound without a failed lookup each (CPython 3.11)
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


def _copy_events(
    connection: Connection, table: Table, rows: Sequence[Row], landed_at: dt.datetime
) -> None:
    """PostgreSQL: COPY into a staging table, then insert what is not there yet."""
    names = [c.name for c in table.columns if c.name != LANDED_AT]
    stage = f"stage_{table.name}"
    column_list = ", ".join([*names, LANDED_AT])
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table.name}) ON COMMIT DELETE ROWS")
        with cursor.copy(f"COPY {stage} ({column_list}) FROM STDIN") as copy:
            # by columns: `Rows` hand over the ones the gate already transposed
            landed = itertools.repeat(landed_at, len(rows))
            for values in zip(*column_lists(names, rows), landed, strict=True):
                copy.write_row(values)
        cursor.execute(
            f"INSERT INTO {table.name} ({column_list}) SELECT {column_list} FROM {stage} "
            "ON CONFLICT (event_id) DO NOTHING"
        )


_SQLITE_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def _sqlite_timestamp(value: dt.datetime | None) -> str | None:
    """What `UtcDateTime` binds on SQLite: naive UTC text (rows hold UTC datetimes already)."""
    if value is None:
        return None
    if value.utcoffset():
        value = value.astimezone(dt.UTC)
    # SQLAlchemy's SQLite DATETIME storage format, formatted directly: `isoformat` costs ~1.5 x this
    return _SQLITE_DATETIME % (
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond
    )


def _sqlite_binders(table: Table, dialect: Any) -> list[Callable[[Any], Any] | None]:
    """Per column, how a value is bound on SQLite: SQLAlchemy's own bind processor, except for
    timestamps, bound by an equivalent direct conversion (the hot path of every event row)."""
    binders: list[Callable[[Any], Any] | None] = []
    for column in table.columns:
        if isinstance(column.type, UtcDateTime):
            binders.append(_sqlite_timestamp)
        else:
            binders.append(column.type.dialect_impl(dialect).bind_processor(dialect))
    return binders


def _sqlite_events(
    connection: Connection, table: Table, rows: Sequence[Row], landed_at: dt.datetime
) -> None:
    """SQLite: one `executemany` on the driver with the parameters SQLAlchemy would bind, converted
    column by column, skipping its per-row statement machinery."""
    names = [c.name for c in table.columns if c.name != LANDED_AT]
    columns = []
    binders = _sqlite_binders(table, connection.dialect)[: len(names)]  # landed_at is the last column
    for bind, values in zip(binders, column_lists(names, rows), strict=True):
        columns.append([bind(v) for v in values] if bind is not None else values)
    columns.append([_sqlite_timestamp(landed_at)] * len(rows))
    names.append(LANDED_AT)
    marks = ", ".join("?" * len(names))
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks}) ON CONFLICT (event_id) DO NOTHING"
    connection.exec_driver_sql(sql, list(zip(*columns, strict=True)))


def insert_events(connection: Connection, family: Family, rows: Sequence[Row]) -> None:
    """Insert event rows of `family` with `landed_at` = now (UTC), ignoring `event_id`s already
    present (one transaction; a replayed row keeps the `landed_at` of its first landing)."""
    table = EVENT_TABLES[family]
    landed_at = dt.datetime.now(dt.UTC)
    if connection.dialect.name == "postgresql":
        _copy_events(connection, table, rows, landed_at)
    else:
        _sqlite_events(connection, table, rows, landed_at)


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
        self._prepared = False

    @classmethod
    def for_pipeline(
        cls, database_url: str, topic: Callable[[str], str], gate: QualityGate | None = None
    ) -> SqlSink:
        """The sink for the physical topics produced by `topic` (e.g. `Settings.topic`)."""
        families = {topic(family.enriched_topic): family for family in Family}
        return cls(make_engine(database_url), families, topic(DEADLETTER_TOPIC), gate)

    def prepare(self) -> None:
        """Create or upgrade the schema (once); `TransientSinkError` while the database is down."""
        if self._prepared:
            return
        try:
            upgrade(self.engine)
        except TRANSIENT_DB_ERRORS as exc:
            raise unavailable(exc) from exc
        self._prepared = True

    def write(self, batch: Batch) -> list[Rejected]:
        return self.write_group([batch])[0]

    def write_group(self, batches: Sequence[Batch]) -> list[list[Rejected]]:
        """Land batches of several partitions and tables: one gate call for all of them (its cost is
        per call), then one transaction per table; the rejected records of each batch."""
        self.prepare()
        rejected: dict[int, list[Rejected]] = {}
        by_family: dict[Family, list[int]] = {}
        try:
            for index, batch in enumerate(batches):
                if batch.topic == self.deadletter_topic:
                    self._land_dead_letters(batch)
                    rejected[index] = []
                else:
                    by_family.setdefault(self.families_by_topic[batch.topic], []).append(index)
            decoded: dict[Family, DecodedBatch] = {}
            for family, indexes in by_family.items():
                decoded[family], per_batch = decode_group(family, [batches[i] for i in indexes])
                rejected.update(zip(indexes, per_batch, strict=True))
                metrics.DUPLICATES.labels(family=family.value).inc(decoded[family].duplicates)
            screened = screen_all(self.gate, {f: (d.rows, d.sources) for f, d in decoded.items()})
            for family, passed in screened.items():
                self._land_screened(family, passed)
        except TRANSIENT_DB_ERRORS as exc:
            raise unavailable(exc) from exc
        return [rejected[index] for index in range(len(batches))]

    def close(self) -> None:
        self.engine.dispose()

    def _land_dead_letters(self, batch: Batch) -> None:
        rows = {}
        for record in batch.records:
            row = dead_letter_row(record)
            rows[(row["original_topic"], row["original_partition"], row["original_offset"])] = row
        self._insert_dead_letters(list(rows.values()), batch)

    def _insert_dead_letters(self, rows: list[dict[str, Any]], batch: Batch) -> None:
        """Insert dead-letter rows; a row the database refuses is bisected out and stored as an
        unreadable dead letter keyed by its own coordinates (its bytes kept), never dropped."""
        try:
            with self.engine.begin() as connection:
                _insert_ignoring_conflicts(connection, dead_letters, rows)
            metrics.ROWS_WRITTEN.labels(sink=self.name, table=dead_letters.name).inc(len(rows))
            return
        except ROW_DB_ERRORS as exc:
            if len(rows) == 1:
                [record] = [r for r in batch.records if r.offset == rows[0]["deadletter_offset"]] or [
                    batch.records[0]
                ]
                log.warning("dead letter at offset %d refused (%s); kept as unreadable", record.offset, exc)
                with self.engine.begin() as connection:
                    _insert_ignoring_conflicts(
                        connection, dead_letters, [unstorable_row(record, first_line(exc))]
                    )
                return
        middle = len(rows) // 2
        self._insert_dead_letters(rows[:middle], batch)
        self._insert_dead_letters(rows[middle:], batch)

    def _land_screened(self, family: Family, screened: Screened) -> None:
        """Land the rows that passed and quarantine the others, in one transaction; on a row the
        database refuses, bisect."""
        if not screened.rows and not screened.quarantined:
            return
        try:
            self._land(family, screened.rows, screened.quarantined)
        except ROW_DB_ERRORS as exc:
            log.warning(
                "%d rows of %s refused by the database (%s); bisecting to isolate the refused rows",
                len(screened.rows),
                family.table,
                first_line(exc),
            )
            refused = self._bisect(family, screened.rows, screened.sources, exc)
            self._land(family, [], screened.quarantined + refused)

    def _land(self, family: Family, rows: Sequence[Row], kept: Sequence[QuarantinedRow]) -> None:
        """One transaction: the rows (less those whose event is quarantined) with the state they
        change, and the quarantined rows (less those whose event already landed)."""
        key = entity_key(family)
        with self.engine.begin() as connection:
            if kept:
                lock_quarantine(connection, family)
            if rows and any_quarantined(connection, family):
                held = quarantined_ids(connection, family, (row["event_id"] for row in rows))
                if held:  # else the rows stay as they are (`Rows` keep their columns)
                    rows = [row for row in rows if event_key(row["event_id"]) not in held]
                    metrics.DUPLICATES.labels(family=family.value).inc(len(held))
            if rows:
                insert_events(connection, family, rows)
                refresh_state(connection, family, (row[key] for row in rows))
            added = insert_quarantined(connection, family, kept) if kept else []
        metrics.ROWS_WRITTEN.labels(sink=self.name, table=family.table).inc(len(rows))
        for entry in added:
            log_quarantined(log, entry)

    def _bisect(
        self, family: Family, rows: Sequence[Row], sources: Sequence[SourceRecord], error: BaseException
    ) -> list[QuarantinedRow]:
        """Land `rows`, which the database refused with `error`, in halves: O(k log n) transactions
        for k refused rows. The refused rows, each alone, come back as quarantine entries."""
        if len(rows) == 1:
            failure = database_refusal(first_line(error))
            return [quarantined(family, rows[0], sources[0], [failure], dt.datetime.now(dt.UTC))]
        middle = len(rows) // 2
        refused: list[QuarantinedRow] = []
        for part, part_sources in ((rows[:middle], sources[:middle]), (rows[middle:], sources[middle:])):
            try:
                self._land(family, part, [])
            except ROW_DB_ERRORS as exc:
                refused.extend(self._bisect(family, part, part_sources, exc))
        return refused

    def release(self, family: Family, entries: Sequence[QuarantinedRow]) -> list[Outcome]:
        """Re-check quarantined rows of `family` against the current gate; each that passes moves
        into its event table in one transaction (row, state, quarantine entry deleted), so it lands
        exactly once however often a release runs. Rows still failing (the gate, or the database)
        stay, with the new failures."""
        self.prepare()
        candidates: list[tuple[QuarantinedRow, Row]] = []
        outcomes: list[Outcome] = []
        for entry in entries:
            try:
                candidates.append((entry, decode_row(family, entry.record.encode("utf-8"))))
            except TerminalRecordError as exc:
                outcomes.append(Outcome(entry, "still failing", exc.detail))
        verdict = self.gate.check(family, [row for _, row in candidates]) if self.gate else None
        for position, (entry, row) in enumerate(candidates):
            failures = verdict.failures_of(position) if verdict else ()
            if not failures:
                try:
                    outcomes.append(self._release_one(family, entry, row))
                    continue
                except ROW_DB_ERRORS as exc:
                    failures = (database_refusal(first_line(exc)),)
            refail(self.engine, entry, [f.as_json() for f in failures])
            outcomes.append(
                Outcome(refailed(entry, failures), "still failing", "; ".join(f.summary for f in failures))
            )
        return outcomes

    def _release_one(self, family: Family, entry: QuarantinedRow, row: Row) -> Outcome:
        with self.engine.begin() as connection:
            lock_quarantine(connection, family)
            remove(connection, entry)
            insert_events(connection, family, [row])
            refresh_state(connection, family, [row[entity_key(family)]])
        metrics.ROWS_WRITTEN.labels(sink=self.name, table=family.table).inc(1)
        return Outcome(entry, "released")
