"""Programmatic Alembic migrations of the SQL warehouse (run at every sink start).

Several sinks may start at once against an empty database, so the upgrade is serialised: on
PostgreSQL by a transaction-level advisory lock, on a SQLite file by an exclusive `flock` of
`<file>.migrate.lock`, and within one process by a mutex (Alembic's `context` is process-global).
The sinks that waited then find the schema at head and do nothing; a database already at head is
recognised by one query, without loading the migration scripts.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATION_LOCK = 0x6D69635F73716C  # "mic_sql": any constant shared by every sink process
_IN_PROCESS = threading.Lock()


def alembic_config() -> Config:
    """An Alembic config using the migrations shipped in `sinks` (the connection is passed in)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@cache
def head_revision() -> str | None:
    """The newest revision shipped in `sinks/migrations`."""
    head: str | None = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head


def at_head(engine: Engine) -> bool:
    """Whether the database's schema is at the newest revision."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return current is not None and current == head_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the warehouse schema to `revision` (idempotent, one transaction)."""
    if revision == "head" and at_head(engine):
        return
    config = alembic_config()
    with _IN_PROCESS, _sqlite_file_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
