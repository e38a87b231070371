"""SQLite binding on the hot path: the NULL adapter of `sinks.sql.sqlite_compat` (gated by version,
installed by the SQLite engine, NULL still bound as NULL) and the direct timestamp binding."""

from __future__ import annotations

import sqlite3
import sys

from sinks.sql import sqlite_compat
from sinks.sql.sink import make_engine

_KEY = (type(None), sqlite3.PrepareProtocol)


def test_the_adapter_is_needed_on_this_python_and_gated_by_version() -> None:
    """Another Python fails this test until someone measures the cost again there (then extends
    `NEEDED_ON`, or drops the workaround)."""
    version = sys.version_info[:2]
    assert sqlite_compat.needed(), f"Python {version}: re-measure the NULL binding cost"
    assert sqlite_compat.needed((3, 11, 7)) and not sqlite_compat.needed((3, 12, 0))
    assert not sqlite_compat.needed((3, 10, 13))


def test_the_sqlite_engine_installs_it() -> None:
    sqlite3.adapters.pop(_KEY, None)
    engine = make_engine("sqlite://")
    try:
        assert sqlite3.adapters.get(_KEY) is sqlite_compat._null
    finally:
        engine.dispose()


def test_nulls_are_still_bound_as_null() -> None:
    assert sqlite_compat.install()
    connection = sqlite3.connect(":memory:")
    try:
        assert connection.execute("SELECT ? IS NULL, typeof(?)", (None, None)).fetchone() == (1, "null")
        connection.execute("CREATE TABLE t (a TEXT, b INTEGER, c REAL)")
        rows = [(None, 1, None), ("x", None, 2.5), (None, None, None)]
        connection.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
        stored = connection.execute("SELECT a, b, c, typeof(a), typeof(b), typeof(c) FROM t").fetchall()
    finally:
        connection.close()
    assert [row[:3] for row in stored] == rows
    assert [row[3:] for row in stored] == [
        ("null", "integer", "null"),
        ("text", "null", "real"),
        ("null", "null", "null"),
    ]


def test_the_direct_timestamp_binding_is_sqlalchemys() -> None:
    """`_sqlite_timestamp` (the event rows' hot path) binds what `UtcDateTime` and SQLAlchemy's
    SQLite DATETIME would: naive UTC text with microseconds."""
    import datetime as dt

    from sqlalchemy.dialects import sqlite

    from sinks.sql.sink import _sqlite_timestamp
    from sinks.sql.tables import UtcDateTime

    dialect = sqlite.dialect()
    column_type = UtcDateTime()
    decorated = column_type.dialect_impl(dialect).bind_processor(dialect)
    assert decorated is not None
    moscow = dt.timezone(dt.timedelta(hours=3))
    values = [
        dt.datetime(2020, 3, 1, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2020, 3, 1, 12, 0, 5, 7, tzinfo=dt.UTC),
        dt.datetime(2021, 1, 1, 1, 30, 0, 999999, tzinfo=moscow),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        None,
    ]
    assert [_sqlite_timestamp(v) for v in values] == [decorated(v) for v in values]
    assert _sqlite_timestamp(values[2]) == "2020-12-31 22:30:00.999999"
