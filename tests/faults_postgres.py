"""A PostgreSQL server of a fault test's own, which the test may stop hard and start again.

`dedicated_postgres` starts one with the project's `scripts/postgres.sh` (own free port, own data
directory: never the shared server of `MIC_TEST_POSTGRES_URL`) and destroys it at the end, keeping
its log in the test's directory. `stop_immediately` is `pg_ctl stop -m immediate` (every backend
killed, no checkpoint: the next start runs crash recovery), called directly because the script's
`stop` is a fast shutdown; `start` is the script's idempotent `start` again.

The data directory is under /tmp rather than pytest's `tmp_path`: run as root, the script runs the
server as the `postgres` OS user, which cannot enter pytest's (mode 0700) temporary directories.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from streams_kafka import free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "postgres.sh"
START_ATTEMPTS = 3


def _owner() -> list[str]:
    """The prefix that runs a command as the server's OS user (as `postgres.sh` does)."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _pg_ctl() -> str:
    """The newest installed server version's `pg_ctl` (the one `postgres.sh` starts the server with)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.parent.name)],
    )
    assert found, "no /usr/lib/postgresql/<version>/bin/pg_ctl although postgres.sh started a server"
    return str(found[-1])


@dataclass
class Server:
    """One dedicated server (its `postgres.sh` environment)."""

    env: dict[str, str]
    url: str = ""

    @property
    def directory(self) -> Path:
        return Path(self.env["MIC_PG_DIR"])

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT), command], env=self.env, capture_output=True,
                              text=True, timeout=300, check=False)

    def try_start(self) -> subprocess.CompletedProcess[str]:
        """`postgres.sh start` (creating the cluster, role and database on first use); its URL
        kept when it started."""
        started = self._script("start")
        if started.returncode == 0:
            self.url = started.stdout.strip()
        return started

    def start(self) -> None:
        """Start it; fails with the script's output when it does not start."""
        started = self.try_start()
        assert started.returncode == 0, f"postgres.sh start failed:\n{started.stderr}"

    def running(self) -> bool:
        return self._script("status").returncode == 0

    def stop_immediately(self) -> None:
        """`pg_ctl stop -m immediate`: the postmaster kills every backend at once (a crash)."""
        stopped = subprocess.run(
            [*_owner(), _pg_ctl(), "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert stopped.returncode == 0, f"pg_ctl stop -m immediate failed:\n{stopped.stdout}{stopped.stderr}"

    def destroy(self) -> None:
        destroyed = self._script("destroy")
        assert destroyed.returncode == 0, f"postgres.sh destroy failed:\n{destroyed.stderr}"


@contextmanager
def dedicated_postgres(logs: Path) -> Iterator[Server]:
    """A started server of this test's own; destroyed at the end, its log copied into `logs`."""
    directory = Path(tempfile.mkdtemp(prefix="mic-pg-faults-", dir="/tmp"))
    directory.chmod(0o755)  # the postgres OS user must reach its data directory inside
    server = None
    try:
        for attempt in range(START_ATTEMPTS):  # another run may take the port before the server does
            server = Server({**os.environ, "MIC_PG_PORT": str(free_port()),
                             "MIC_PG_DIR": str(directory / f"pg-{attempt}")})
            started = server.try_start()
            if started.returncode == 0:
                break
            assert "already in use" in started.stderr, f"postgres.sh start failed:\n{started.stderr}"
            server.destroy()
        assert server is not None and server.url, "no free port for the dedicated PostgreSQL server"
        yield server
    finally:
        if server is not None:
            log = server.directory / "postgres.log"
            if log.is_file():
                logs.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, logs / "postgres.log")
            server.destroy()
        shutil.rmtree(directory)
