"""`mic-pipeline demo --quick` end to end (simulate -> streams -> both sinks) on the real broker, with
the SQLite default and with a fresh database on the real PostgreSQL server: it must reconcile, read
OK on the operators' page from the start of its traffic to the end of the drain, write the report,
and leave no topic, consumer group or process of its run behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from kafka import KafkaAdminClient

from mic_pipeline.infra.processes import is_alive

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_quick_demo_reconciles_and_cleans_up(kafka_bootstrap: str, tmp_path: Path) -> None:
    run_quick_demo(kafka_bootstrap, tmp_path, database_url=None)


@pytest.fixture
def empty_postgres_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (the demo refuses a non-empty one)."""
    name = f"demo_{uuid.uuid4().hex[:10]}"
    server = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.mark.postgres
def test_quick_demo_reconciles_on_postgres(
    kafka_bootstrap: str, empty_postgres_database: str, tmp_path: Path
) -> None:
    run_quick_demo(kafka_bootstrap, tmp_path, database_url=empty_postgres_database)
    engine = sa.create_engine(empty_postgres_database)
    try:
        with engine.connect() as connection:
            landed = connection.execute(sa.text("SELECT count(DISTINCT event_id) FROM order_events")).scalar()
    finally:
        engine.dispose()
    assert landed and landed > 0


def run_quick_demo(kafka_bootstrap: str, tmp_path: Path, *, database_url: str | None) -> None:
    """Run `demo --quick` and check its reconciliation, report and clean-up."""
    environment = {**os.environ, "MIC_KAFKA_BOOTSTRAP": kafka_bootstrap}
    environment.pop("MIC_DATABASE_URL", None)
    command = [
        sys.executable,
        "-m",
        "mic_pipeline.cli",
        "demo",
        "--quick",
        "--dir",
        str(tmp_path),
        "--web-port",
        "0",
        *(["--database-url", database_url] if database_url else []),
    ]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=150)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, "\n".join(output.splitlines()[-45:])
    assert "RECONCILED: " in output and "NOT RECONCILED" not in output
    # the operators' page read OK from the start of the traffic to the end of the drain
    assert re.search(r"^verdicts of the web page while traffic: OK x\d+$", output, re.M), output
    assert re.search(r"^verdicts of the web page while draining: OK x\d+$", output, re.M), output
    match = re.search(
        r"events produced \(ground truth\): ([\d,]+) = ([\d,]+) valid \+ ([\d,]+) invalid", output
    )
    assert match, output
    produced, valid, invalid = (int(group.replace(",", "")) for group in match.groups())
    assert produced == sum(1 for _ in (tmp_path / "ground_truth.jsonl").open()) and produced > 2000
    assert invalid > 0 and valid > 0
    assert re.search(rf"total\s+{valid:,}\s+{valid:,}\s+{valid:,}", output), output
    assert (tmp_path / "report" / "index.html").is_file()
    with (tmp_path / "report" / "dead_letters_by_reason.csv").open() as file:
        assert sum(int(line.rsplit(",", 1)[1]) for line in list(file)[1:]) == invalid
    prefix = re.search(r"topic prefix (demo\d+\.)", output)
    assert prefix, output
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert not [t for t in admin.list_topics() if t.startswith(prefix.group(1))]
        assert not [g for g in admin.list_groups() if g["group_id"].startswith(prefix.group(1))]
    finally:
        admin.close()
    pids = [
        int(pid) for pid in re.findall(r"\(pid (\d+)\)", (tmp_path / "logs" / "pipeline.log").read_text())
    ]
    assert len(pids) == 4 and not any(is_alive(pid) for pid in pids)
