"""The warehouse failing under the sinks on the 3-broker cluster, mid-traffic: the SQL sink's
PostgreSQL stopped with `pg_ctl stop -m immediate` (a crash: every backend killed, crash recovery
at the next start) and started again; then the Parquet warehouse's disk (a small tmpfs) filled with
a ballast file until writes fail, and freed.

The SQL sink writes to a PostgreSQL server of the test's own (`faults_postgres`), never the shared
one. Through each outage the sink must keep running, say why it is not ready in `/health`, retry
while the producer keeps sending, and catch up once the fault is over; the test ends with the
reconciliation (`faults_reconcile`): every acknowledged record exactly once in SQL and in Parquet or
among the dead letters, nothing quarantined, no temporary file left in the warehouse.

The tmpfs needs root (as `scripts/test.sh` runs in CI); without it the disk-full half is skipped
with a warning naming why, and the PostgreSQL half still runs.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from faults_pipeline import Pipeline, Proc
from faults_postgres import Server, dedicated_postgres
from faults_reconcile import ParquetReader, sql_state
from faults_steps import (
    assert_every_record_acknowledged_and_accounted,
    stop_sending_and_reconcile,
    wait_for_growth,
)
from faults_traffic import Sender, Sent, Traffic
from streams_kafka import wait_until
from warehouse_disk import CHUNK, fill_up, tmpfs

from mic_pipeline.config import Settings

if TYPE_CHECKING:
    from faults_cluster import Cluster

pytest_plugins = ["faults_cluster"]
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

RATE = 150
"""Records/s of the producer during the faults."""
WARM_UP = 300
"""Records sent before the steady traffic, to have both sinks landing rows (see `_warm_up`)."""
DISK_SIZE = "256m"
"""The Parquet warehouse's tmpfs, filled by the ballast: room for the run's files and claim index
(about 80 MB at the end of a run here: a file per batch and event date)."""
OUTAGE_RECORDS = 3 * RATE
"""Records acknowledged while a fault lasts (about 3 s of traffic)..."""
OUTAGE_RETRIES = 3
"""...and failed write attempts the sink has logged meanwhile, at least."""
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (?P<level>[A-Z]+) (?P<logger>[\w.]+): ")
"""A record of a sink's log (`sinks.cli`'s format)."""
DATABASE_DOWN = "database unavailable"
DISK_FULL = "disk full"


def _sql_rows(settings: Settings) -> int:
    return sum(sql_state(settings.database_url)[0].values())


def _parquet_rows(parquet: ParquetReader, attempts: int = 5) -> int:
    """Rows in the Parquet dataset, counted again when a file vanished between the listing and its
    reading: after a failed write the sink removes the files of that uncommitted attempt before
    writing them again (the last attempt's error is raised)."""
    for _ in range(attempts - 1):
        try:
            return sum(parquet.event_ids().values())
        except FileNotFoundError:
            continue
    return sum(parquet.event_ids().values())


def _own_errors(log: str) -> list[str]:
    """The sink's own errors in its log: records at ERROR or above, and tracebacks, except those of
    kafka-python's loggers (3.0 logs a traceback when a socket is closed under a pending read as
    the sink leaves its group at shutdown; the sink is not concerned and exits 0)."""
    errors: list[str] = []
    logger = ""
    for line in log.splitlines():
        record = LOG_RECORD.match(line)
        if record:
            logger = record["logger"]
            if record["level"] in ("ERROR", "CRITICAL") and not logger.startswith("kafka."):
                errors.append(line)
        elif line.startswith("Traceback") and not logger.startswith("kafka."):
            errors.append(f"a traceback after a record of {logger or 'no logger'}")
    return errors


def _not_ready_reasons(sink: Proc, words: str) -> list[str]:
    """The reasons of the sink's `/health` naming `words`, when it answers 503 (else none)."""
    status, document = sink.get("/health")
    if status != 503 or not isinstance(document, dict):
        return []
    return [reason for reason in document.get("reasons", []) if words in reason]


def _failed_attempts(sink: Proc, words: str) -> int:
    """Write attempts the sink logged as failed with an error starting with `words` (the runner's
    `<step> failed (<error>); retrying in ...`)."""
    return sink.log.read_text(errors="replace").count(f" failed ({words}")


def _still_sending(sender: Sender) -> None:
    """The producer runs: it neither failed nor ran out of records (the faults need it to go on)."""
    if sender.error is not None:
        raise sender.error
    assert sender.is_alive(), f"the producer sent all {len(sender.batch)} records before the faults ended"


def _outage(sink: Proc, words: str, sender: Sender, pipeline: Pipeline, began: float) -> dict[str, Any]:
    """While a fault lasts: the sink says it is not ready because of `words`, keeps running and
    retries while the producer goes on; what was observed."""
    traffic = sender.traffic
    reasons: list[str] = []

    def not_ready() -> bool:
        pipeline.check_alive()
        assert sink.alive, f"{sink.name} exited with {sink.process.returncode}:\n{sink.tail()}"
        reasons[:] = _not_ready_reasons(sink, words)
        return bool(reasons)

    wait_until(not_ready, 60, f"{sink.name}: /health never answered 503 naming '{words}'")
    seconds_to_not_ready = round(time.monotonic() - began, 1)
    target = len(traffic.acknowledged()) + OUTAGE_RECORDS

    def held() -> bool:
        pipeline.check_alive()
        _still_sending(sender)
        assert sink.alive, f"{sink.name} exited with {sink.process.returncode}:\n{sink.tail()}"
        return len(traffic.acknowledged()) >= target and _failed_attempts(sink, words) >= OUTAGE_RETRIES

    wait_until(held, 60, f"{sink.name}: {OUTAGE_RECORDS} records acknowledged and "
                         f"{OUTAGE_RETRIES} failed attempts logged during the outage")
    assert _not_ready_reasons(sink, words), f"{sink.name} said it was ready again while '{words}' lasted"
    return {"reason": reasons[0][:200], "seconds_to_not_ready": seconds_to_not_ready,
            "failed_attempts": _failed_attempts(sink, words)}


def _ready(sink: Proc, pipeline: Pipeline, since: float, timeout_s: float = 90.0) -> float:
    """Until the sink's `/health` answers 200; the seconds since `since`."""

    def ready() -> bool:
        pipeline.check_alive()
        return sink.get("/health")[0] == 200

    wait_until(ready, timeout_s, f"{sink.name}: /health not ready:\n{sink.tail()}")
    return round(time.monotonic() - since, 1)


def _warm_up(traffic: Traffic, records: list[Sent], pipeline: Pipeline, began: float) -> float:
    """Send `records` and wait until both sinks land rows; the seconds since `began`. A sink's first
    batch loads its quality gate (Great Expectations: tens of seconds on a loaded machine), so the
    steady traffic starts after it rather than piling up a backlog the faults do not need."""
    traffic.send(records)
    parquet = ParquetReader(pipeline.settings.warehouse_dir)

    def landing() -> bool:
        pipeline.check_alive()
        return _sql_rows(pipeline.settings) > 0 and _parquet_rows(parquet) > 0

    wait_until(landing, 180, "rows of the warm-up landed in SQL and Parquet", interval_s=1.0)
    return round(time.monotonic() - began, 1)


def _postgres_crash(server: Server, sql: Proc, sender: Sender, pipeline: Pipeline) -> dict[str, Any]:
    """(1) PostgreSQL stopped with `-m immediate` once SQL rows land, kept down while the traffic
    goes on, started again; until SQL rows grow and the sink is ready again. What was observed."""
    rows = partial(_sql_rows, pipeline.settings)
    at_stop = wait_for_growth(rows, 100, "SQL rows", pipeline)
    began = time.monotonic()
    server.stop_immediately()
    outage = _outage(sql, DATABASE_DOWN, sender, pipeline, began)
    assert not server.running()
    server.start()
    restarted = time.monotonic()
    after = wait_for_growth(rows, 100, "SQL rows after PostgreSQL's restart", pipeline)
    return {**outage, "rows_at_stop": at_stop, "rows_after_restart": after,
            "seconds_down": round(restarted - began, 1),
            "seconds_to_ready": _ready(sql, pipeline, restarted)}


def _disk_full(parquet_sink: Proc, sender: Sender, pipeline: Pipeline) -> dict[str, Any]:
    """(2) The warehouse's tmpfs filled by a ballast file once Parquet rows land, kept full while
    the traffic goes on, freed; until Parquet rows grow and the sink is ready again."""
    warehouse = pipeline.settings.warehouse_dir
    rows = partial(_parquet_rows, ParquetReader(warehouse))
    at_fill = wait_for_growth(rows, 100, "Parquet rows", pipeline)
    began = time.monotonic()
    used = shutil.disk_usage(warehouse).used
    ballast = warehouse / "ballast"
    ballast_bytes = fill_up(ballast)
    assert shutil.disk_usage(warehouse).free < CHUNK, "the ballast did not fill the warehouse's disk"
    outage = _outage(parquet_sink, DISK_FULL, sender, pipeline, began)
    when_freed = rows()
    ballast.unlink()
    freed = time.monotonic()
    after = wait_for_growth(rows, 100, "Parquet rows after the disk was freed", pipeline)
    return {**outage, "rows_at_fill": at_fill, "rows_when_freed": when_freed, "rows_after_free": after,
            "warehouse_bytes_at_fill": used, "ballast_bytes": ballast_bytes, "disk_size": DISK_SIZE,
            "seconds_full": round(freed - began, 1),
            "seconds_to_ready": _ready(parquet_sink, pipeline, freed)}


def test_postgres_stopped_immediately_and_the_warehouse_disk_full_mid_traffic_each_recovered_reconciles(
    cluster: Cluster, faults_settings: Settings, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    with dedicated_postgres(logs) as server, tmpfs(faults_settings.warehouse_dir, DISK_SIZE) as disk:
        settings = dataclasses.replace(faults_settings, database_url=server.url)
        traffic = Traffic(settings, seed=61)
        warm_up = traffic.take(WARM_UP, hostile=2)
        batch = traffic.take(30_000, hostile=40)  # more than the faults need: the sender is stopped after
        pipeline = Pipeline(settings, logs)
        notes: dict[str, Any] = {"rate": RATE}
        sender = None
        began = time.monotonic()
        try:
            worker, sql, parquet_sink = pipeline.start_all()
            notes["seconds_to_first_rows"] = _warm_up(traffic, warm_up, pipeline, began)
            sender = traffic.send_in_background(batch, rate=RATE)
            notes["postgres_immediate_stop"] = _postgres_crash(server, sql, sender, pipeline)
            if disk.mounted:
                notes["disk_full"] = _disk_full(parquet_sink, sender, pipeline)
            else:
                warnings.warn(f"disk-full half skipped: {disk.why_not}", pytest.PytestWarning, stacklevel=1)
                notes["disk_full"] = f"skipped: {disk.why_not}"
            notes["seconds_to_reconcile"] = round(time.monotonic() - began, 1)
            counts = stop_sending_and_reconcile(sender, pipeline, traffic, worker, notes)
            print(f"warehouse: {shutil.disk_usage(settings.warehouse_dir).used} bytes used of {DISK_SIZE}")
        finally:
            if sender is not None:  # a failed test: the producer thread must not outlive it
                sender.stopping.set()
            statuses = pipeline.close()
    assert [proc.name for proc in pipeline.started] == ["streams-0", "sql-0", "parquet-0"]
    assert statuses == {"streams-0": 0, "sql-0": 0, "parquet-0": 0}, statuses
    for sink in (sql, parquet_sink):
        assert not _own_errors(sink.log.read_text(errors="replace")), f"{sink.name}:\n{sink.tail(80)}"
    assert_every_record_acknowledged_and_accounted(traffic, counts)
    assert counts.landed >= notes["postgres_immediate_stop"]["rows_after_restart"]
