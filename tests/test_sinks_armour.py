"""A sink never exits on one row, waits for a database that is down at start-up, and says why it is
not ready: NUL on PostgreSQL, bisection, dead letters the database refuses, disk full."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as ds
import pytest
from sinks_records import BASE_TIME, company, encode, record, scenario
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from streams_kafka import wait_until
from warehouse_disk import small_disk

from mic_pipeline.config import Settings
from schemas.topics import Family
from sinks.app import build_sink, sink_topics
from sinks.batch import Batch, SourceRecord
from sinks.errors import TransientSinkError
from sinks.runner import RunnerConfig, SinkRunner
from sinks.sql.sink import SqlSink, make_engine
from sinks.sql.tables import EVENT_TABLES, STATE_TABLES, dead_letters, quarantined_rows

ROOT = Path(__file__).resolve().parent.parent
TOPICS = {f"x.{family.enriched_topic}": family for family in Family}
TOPIC = "x.mic.membership.enriched"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        created = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
        yield created
        created.dispose()
        return
    with pg_schema(request.getfixturevalue("postgres_url")) as url:
        created = make_engine(url)
        yield created
        created.dispose()


@contextlib.contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield (
            make_url(base_url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def members(n: int) -> list[dict[str, Any]]:
    return [
        record(
            Family.MEMBER,
            "member.joined",
            company(i),
            BASE_TIME,
            name=f"M{i}",
            kind="company",
            region_code="77",
            sector="it",
            size="small",
            status="participant",
        )
        for i in range(n)
    ]


def member_batch(rows: list[dict[str, Any]]) -> Batch:
    return Batch(TOPIC, 0, tuple(SourceRecord(TOPIC, 0, i, None, encode(r)) for i, r in enumerate(rows)))


def landed_names(engine: Engine) -> list[str]:
    table = EVENT_TABLES[Family.MEMBER]
    with engine.connect() as connection:
        return sorted(connection.execute(select(table.c.name)).scalars())


@pytest.mark.postgres
def test_a_nul_the_database_refuses_is_quarantined_alone_and_the_sink_carries_on(postgres_url: str) -> None:
    rows = members(8)
    rows[5]["name"] = "A\u0000B"  # contract-valid before 2026-11-30; PostgreSQL text cannot hold it
    with pg_schema(postgres_url) as url:
        engine = make_engine(url)
        sink = SqlSink(engine, TOPICS, "x.mic.deadletter")  # no gate: the database is the last line
        assert sink.write(member_batch(rows)) == []
        assert sink.write(member_batch(rows)) == []  # the replay after a restart does not die either
        assert landed_names(engine) == sorted(f"M{i}" for i in range(8) if i != 5)
        with engine.connect() as connection:
            [kept] = connection.execute(select(quarantined_rows)).all()
            companies = connection.execute(select(func.count()).select_from(STATE_TABLES[Family.MEMBER]))
            assert companies.scalar_one() == 7
        assert kept.event_id == rows[5]["event_id"] and kept.record_offset == 5
        [failure] = orjson.loads(kept.failures)
        assert failure["expectation"] == "DatabaseRefused" and "NUL" in failure["value"]
        engine.dispose()


def test_bisection_isolates_refused_rows_in_logarithmic_transactions(engine: Engine) -> None:
    sink = SqlSink(engine, TOPICS, "x.mic.deadletter")
    sink.prepare()
    refuse = "refuse-me"
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON member_events WHEN NEW.name = 'refuse-me' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
                )
            )
        else:
            connection.execute(
                text("ALTER TABLE member_events ADD CONSTRAINT refuse CHECK (name <> 'refuse-me')")
            )
    rows = members(64)
    rows[9]["name"] = refuse
    rows[40]["name"] = refuse
    commits: list[int] = []
    rollbacks: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    event.listen(engine, "rollback", lambda _conn: rollbacks.append(1))
    assert sink.write(member_batch(rows)) == []
    transactions = len(commits) + len(rollbacks)
    assert transactions <= 2 * 2 * math.ceil(math.log2(64)) + 3, transactions  # k=2 refused, n=64: not 64
    assert len(landed_names(engine)) == 62
    with engine.connect() as connection:
        kept = sorted(connection.execute(select(quarantined_rows.c.record_offset)).scalars())
    assert kept == [9, 40]


def test_dead_letters_the_database_would_refuse_are_stored_never_dropped(engine: Engine) -> None:
    letter = {
        "reason": "schema_violation",
        "detail": "bad \u0000 detail",
        "original_topic": "mic.membership",
        "original_partition": 1,
        "original_offset": 5,
        "original_key": "k\u0000",
        "original_value": '{"name": "A\u0000B"}',
        "event_id": "e" * 100,
        "event_type": "member.joined",
        "failed_at": "2026-11-30T10:00:00Z",
    }
    records = (
        SourceRecord("x.mic.deadletter", 0, 0, None, orjson.dumps(letter)),
        SourceRecord("x.mic.deadletter", 0, 1, None, b"\x00\x01 not json"),
    )
    sink = SqlSink(engine, TOPICS, "x.mic.deadletter")
    assert sink.write(Batch("x.mic.deadletter", 0, records)) == []
    with engine.connect() as connection:
        rows = connection.execute(select(dead_letters).order_by(dead_letters.c.original_topic)).all()
    assert [(r.original_topic, r.original_offset) for r in rows] == [
        ("mic.membership", 5),
        ("x.mic.deadletter", 1),
    ]
    assert rows[0].original_encoding == "base64" and len(rows[0].event_id) == 64
    assert rows[1].original_encoding == "base64"


def test_a_database_down_at_start_up_is_a_transient_error_not_a_crash() -> None:
    sink = SqlSink(
        make_engine("postgresql+psycopg://mic:mic@127.0.0.1:1/nowhere"), TOPICS, "x.mic.deadletter"
    )
    with pytest.raises(TransientSinkError) as raised:
        sink.prepare()
    assert raised.value.kind == "database"
    assert str(raised.value).startswith("database unavailable: ")


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())
    except OSError:
        return 0, {}


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.kafka
def test_sql_sink_started_with_the_database_down_waits_and_says_so(pipeline_topics: Settings) -> None:
    port = free_port()
    log = pipeline_topics.warehouse_dir.parent / "sink.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        MIC_KAFKA_BOOTSTRAP=pipeline_topics.kafka_bootstrap,
        MIC_TOPIC_PREFIX=pipeline_topics.topic_prefix,
        MIC_DATABASE_URL="postgresql+psycopg://mic:mic@127.0.0.1:1/nowhere",
        MIC_WAREHOUSE_DIR=str(pipeline_topics.warehouse_dir),
    )
    command = [
        sys.executable,
        "-m",
        "mic_pipeline.cli",
        "sink",
        "sql",
        "--no-gate",
        "--metrics-port",
        str(port),
    ]
    command += ["--group-id", f"g-down-{uuid.uuid4().hex[:6]}"]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=output)
    try:

        def says_database_unavailable() -> bool:
            status, document = readiness(port)
            return status == 503 and any("database unavailable" in r for r in document.get("reasons", []))

        wait_until(says_database_unavailable, 90, "/health/ready 503 naming the database")
        wait_until(
            lambda: log.read_text().count("sink start-up failed (database unavailable") >= 2, 60, "retries"
        )
        assert process.poll() is None, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.kafka
def test_disk_full_is_named_in_readiness_leaves_no_temporary_files_and_loses_nothing(
    pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kafka import KafkaProducer

    settings = pipeline_topics
    warehouse = settings.warehouse_dir
    with small_disk(warehouse, monkeypatch) as fill:
        sink = build_sink(settings, "parquet", None)
        group = f"g-full-{uuid.uuid4().hex[:6]}"
        config = RunnerConfig(group_id=group, max_batch_rows=200, max_batch_wait_s=0.2, backoff_max_s=1.0)
        runner = SinkRunner(settings, sink, sink_topics(settings, "parquet"), config)
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop.is_set,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: bool(runner.buffers.by_partition), 60, "an assignment")
            fill(True)
            events = scenario(60)
            producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
            for family, row in events:
                producer.send(
                    settings.topic(family.enriched_topic), key=row["company_id"].encode(), value=encode(row)
                )
            producer.flush(30)
            producer.close()

            def disk_full_reported() -> bool:
                state = runner.health.state()
                return not state.ready and any(r.startswith("sink write: disk full") for r in state.reasons)

            wait_until(disk_full_reported, 60, "readiness naming the full disk")
            assert runner.committed_batches == 0
            assert [p for p in warehouse.rglob("*") if p.name.endswith(".tmp")] == []
            fill(False)

            def all_landed() -> bool:
                count = 0
                for family in Family:
                    directory = warehouse / family.table
                    if any(directory.glob("event_date=*/*.parquet")):
                        count += ds.dataset(directory, format="parquet", partitioning="hive").count_rows()
                return count == len(events)

            wait_until(all_landed, 120, "every row once space returned")
            wait_until(lambda: runner.health.ready, 30, "ready again")
            assert [p for p in warehouse.rglob("*") if p.name.endswith(".tmp")] == []
        finally:
            stop.set()
            thread.join(60)
            runner.close()
