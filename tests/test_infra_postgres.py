"""The test PostgreSQL server: the URL the tests get works, and scripts/postgres.sh cycles cleanly."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"


@pytest.mark.postgres
def test_test_database_url_connects_as_an_owner_who_may_create(postgres_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            user, database = connection.execute(sa.text("SELECT current_user, current_database()")).one()
            assert (user, database) == (engine.url.username, engine.url.database)
            may_create_db = connection.execute(
                sa.text("SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user")
            ).scalar_one()
            assert may_create_db is True
            connection.execute(sa.text("CREATE TEMPORARY TABLE probe (id int PRIMARY KEY)"))
            connection.execute(sa.text("INSERT INTO probe VALUES (1), (2)"))
            assert connection.execute(sa.text("SELECT count(*) FROM probe")).scalar_one() == 2
    finally:
        engine.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def open_tmp_dir() -> Iterator[Path]:
    """A temporary directory the `postgres` OS user can enter (pytest's tmp_path is closed)."""
    path = Path(tempfile.mkdtemp(prefix="mic-pg-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_postgres_script_start_is_idempotent_and_stop_is_clean(postgres_url: str, open_tmp_dir: Path) -> None:
    import sqlalchemy as sa

    port = _free_port()
    env = {
        **os.environ,
        "MIC_PG_PORT": str(port),
        "MIC_PG_DIR": str(open_tmp_dir / "pg"),
        "MIC_PG_USER": "probe_user",
        "MIC_PG_PASSWORD": "probe-secret.1",
        "MIC_PG_DATABASE": "probe_db",
    }
    try:
        first = _script(env, "start")
        assert first.returncode == 0, first.stderr
        url = first.stdout.strip()
        assert url == f"postgresql+psycopg://probe_user:probe-secret.1@127.0.0.1:{port}/probe_db"
        second = _script(env, "start")
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert second.stdout.strip() == url
        assert _script(env, "status").returncode == 0

        engine = sa.create_engine(
            sa.URL.create(
                "postgresql+psycopg",
                username="probe_user",
                password="probe-secret.1",
                host="127.0.0.1",
                port=port,
                database="probe_db",
            )
        )
        try:
            with engine.connect() as connection:
                assert connection.execute(sa.text("SELECT current_database()")).scalar_one() == "probe_db"
        finally:
            engine.dispose()
    finally:
        stopped = _script(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert _script(env, "status").returncode == 1
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do (TIME_WAIT)
        probe.bind(("127.0.0.1", port))  # nobody listens on the port any more
    assert "may only use" in _script({**env, "MIC_PG_PASSWORD": "a b"}, "start").stderr
    destroyed = _script(env, "destroy")
    assert destroyed.returncode == 0, destroyed.stderr
    assert not (open_tmp_dir / "pg").exists()
