"""Warehouse freshness and quality-gate reading for `status`, on SQLite files made here."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from mic_pipeline.ops.warehouse_probe import read_warehouse

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_missing_sqlite_file_means_no_sql_sink_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.db"
    reading = read_warehouse(f"sqlite:///{path}", NOW)
    assert reading.error is None
    assert reading.freshness == ()
    assert not reading.quality.available
    assert not path.exists()


def test_newest_event_per_family_and_quarantine(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE order_events (event_id TEXT PRIMARY KEY, occurred_at DATETIME, landed_at DATETIME)"
        )
        db.executemany(
            "INSERT INTO order_events VALUES (?, ?, ?)",
            [
                ("a", "2026-03-01 11:59:00.000000", "2026-03-01 11:00:00.000000"),
                ("b", "2020-01-01 00:00:00.000000", "2026-03-01 11:58:20.000000"),
                ("c", "2026-03-01 11:59:30.000000", None),  # landed before the column existed
            ],
        )
        db.execute(
            "CREATE TABLE member_events (event_id TEXT PRIMARY KEY, occurred_at DATETIME, landed_at DATETIME)"
        )
        db.execute("CREATE TABLE patent_events (event_id TEXT PRIMARY KEY, occurred_at DATETIME)")
        db.execute(
            "CREATE TABLE quarantined_batches (topic TEXT, partition INTEGER, first_offset INTEGER, "
            "last_offset INTEGER, table_name TEXT, record_count INTEGER, reason TEXT, records TEXT, "
            "quarantined_at DATETIME)"
        )
        db.execute(
            "INSERT INTO quarantined_batches VALUES ('p.mic.orders.enriched', 1, 100, 149, 'order_events', "
            "50, 'amount_rub scale > 2', '[]', '2026-03-01 11:59:00')"
        )
    reading = read_warehouse(f"sqlite:///{path}", NOW)
    assert reading.error is None
    by_table = {f.table: f for f in reading.freshness}
    assert by_table["order_events"].newest_landed_at == datetime(2026, 3, 1, 11, 58, 20, tzinfo=UTC)
    assert by_table["order_events"].age_seconds == 100.0
    assert by_table["order_events"].sink == "sql"
    assert by_table["member_events"].newest_landed_at is None
    assert by_table["patent_events"].age_seconds is None  # not migrated yet: no landed_at column
    assert reading.quality.available
    assert reading.quality.failures == 1
    assert reading.quality.details == (
        "quarantined order_events batch p.mic.orders.enriched[1] offsets 100-149: amount_rub scale > 2",
    )


def test_failed_expectations_of_the_latest_check_run_count(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE quality_results (run_id TEXT, table_name TEXT, expectation TEXT, success BOOLEAN, "
            "unexpected_count INTEGER, element_count INTEGER, details TEXT, checked_at DATETIME)"
        )
        rows = [
            ("old", "order_events", "ids unique", 0, 3, 10, "", "2026-03-01 10:00:00"),
            ("new", "order_events", "ids unique", 1, 0, 10, "", "2026-03-01 11:00:00"),
            ("new", "companies", "inn format", 0, 2, 10, "", "2026-03-01 11:00:00"),
        ]
        db.executemany("INSERT INTO quality_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    reading = read_warehouse(f"sqlite:///{path}", NOW)
    assert reading.quality.failures == 1
    assert reading.quality.details == ("check companies: inn format failed (2 unexpected)",)


def test_unreachable_database_is_an_error_not_an_exception() -> None:
    reading = read_warehouse("postgresql+psycopg://nobody@127.0.0.1:1/warehouse?connect_timeout=2", NOW)
    assert reading.error is not None
    assert "127.0.0.1" in reading.error or "refused" in reading.error.lower()
    assert reading.freshness == ()


def test_parquet_freshness_is_the_newest_landed_at_of_the_newest_files(tmp_path: Path) -> None:
    import datetime as dt
    import os

    import pyarrow.parquet as pq
    from sinks_records import encode, scenario

    from mic_pipeline.ops.warehouse_probe import parquet_freshness
    from schemas.topics import Family
    from sinks.parquet.claims import EventIdClaims
    from sinks.parquet.layout import partition_dir, to_table
    from sinks.rows import decode_row

    assert parquet_freshness(tmp_path, NOW) == ()  # the Parquet sink never ran here
    EventIdClaims(tmp_path).close()
    row = next(decode_row(f, encode(r)) for f, r in scenario(1) if f is Family.ORDER)
    old, new = datetime(2026, 3, 1, 11, 0, tzinfo=UTC), datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    for name, landed in (("a.parquet", new), ("b.parquet", old)):
        path = partition_dir(tmp_path, "order_events", dt.date(2026, 3, 1)) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(to_table(Family.ORDER, [row], landed_at=landed), path)
        os.utime(path, (landed.timestamp(), landed.timestamp()))
    by_table = {f.table: f for f in parquet_freshness(tmp_path, NOW)}
    assert (by_table["order_events"].newest_landed_at, by_table["order_events"].age_seconds) == (new, 60.0)
    assert by_table["order_events"].sink == "parquet"
    assert by_table["member_events"].newest_landed_at is None
