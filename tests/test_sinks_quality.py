"""Quality gates with Great Expectations: batch suites, quarantine, and `mic-pipeline check`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sinks_records import BASE_TIME, company, encode, record, scenario
from sqlalchemy import func, select

from mic_pipeline.cli import main
from schemas.topics import Family
from sinks.batch import Batch, SourceRecord
from sinks.parquet.sink import ParquetSink
from sinks.quality.gate import GxGate
from sinks.rows import decode_row
from sinks.sql.sink import SqlSink, make_engine
from sinks.sql.tables import EVENT_TABLES, quality_results, quarantined_batches

TOPICS = {f"x.{family.enriched_topic}": family for family in Family}


@pytest.fixture(scope="module")
def gate() -> GxGate:
    return GxGate()  # imports GX once for the module


def rows_of(family: Family, events: list[tuple[Family, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [decode_row(family, encode(row)) for f, row in events if f is family]


def test_valid_batches_of_every_family_pass(gate: GxGate) -> None:
    events = scenario(40)
    for family in Family:
        verdict = gate.check(family, rows_of(family, events))
        assert verdict.passed, verdict.failures


def test_bad_values_fail_the_batch_with_the_expectations_named(gate: GxGate) -> None:
    rows = rows_of(Family.ORDER, scenario(10))
    rows[0]["industry"] = "shipbuilding"
    rows[1]["event_id"] = rows[2]["event_id"]
    rows[3]["region_code"] = "00"
    rows[4]["occurred_at"] = dt.datetime(1999, 12, 31, tzinfo=dt.UTC)
    rows[5]["manufacturer_id"] = "12345"
    rows[6]["quantity"] = 0
    failures = gate.check(Family.ORDER, rows).failures
    assert [f.split(":")[0] for f in failures] == [
        "ExpectColumnValuesToBeUnique(event_id)",
        "ExpectColumnValuesToBeBetween(occurred_at)",
        "ExpectColumnValuesToMatchRegex(manufacturer_id)",
        "ExpectColumnValuesToBeBetween(quantity)",
        "ExpectColumnValuesToMatchRegex(region_code)",
        "ExpectColumnValuesToBeInSet(industry)",
    ]
    assert "'shipbuilding'" in failures[-1]


def bad_enum_batch(topic: str) -> Batch:
    good = record(Family.ORDER, "order.cancelled", company(1), BASE_TIME, order_id="o1")
    bad = record(Family.ORDER, "order.placed", company(1), BASE_TIME, order_id="o2", industry="shipbuilding")
    records = (SourceRecord(topic, 0, 7, None, encode(good)), SourceRecord(topic, 0, 8, None, encode(bad)))
    return Batch(topic, 0, records)


def test_sql_sink_quarantines_a_batch_the_gate_refuses(gate: GxGate, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    sink = SqlSink(engine, TOPICS, "x.mic.deadletter", gate)
    assert sink.write(bad_enum_batch("x.mic.orders.enriched")) == []
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(EVENT_TABLES[Family.ORDER])).scalar() == 0
        [kept] = connection.execute(select(quarantined_batches)).all()
    assert (kept.first_offset, kept.last_offset, kept.record_count) == (7, 8, 2)
    assert "ExpectColumnValuesToBeInSet(industry)" in kept.reason
    engine.dispose()


def test_parquet_sink_quarantines_a_batch_the_gate_refuses(gate: GxGate, tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, TOPICS, gate)
    sink.write(bad_enum_batch("x.mic.orders.enriched"))
    assert list(tmp_path.rglob("*.parquet")) == []
    [kept] = list((tmp_path / "_quarantine").rglob("*.json"))
    assert b"ExpectColumnValuesToBeInSet(industry)" in kept.read_bytes()


def test_check_stores_results_builds_data_docs_and_finds_orphans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    sink = SqlSink(engine, TOPICS, "x.mic.deadletter")
    orphan = record(
        Family.ORDER,
        "order.placed",
        company(999),
        BASE_TIME,
        order_id="orphan",
        industry="light_industry",
        title="t",
        quantity=1,
        budget_rub="1.00",
        deadline="2020-10-01",
    )
    events = [*scenario(10), (Family.ORDER, orphan)]
    parquet = ParquetSink(tmp_path, TOPICS)
    for family in Family:
        topic = f"x.{family.enriched_topic}"
        mine = [SourceRecord(topic, 0, i, None, encode(r)) for i, (f, r) in enumerate(events) if f is family]
        sink.write(Batch(topic, 0, tuple(mine)))
        parquet.write(Batch(topic, 0, tuple(mine)))
    parquet.close()
    monkeypatch.setenv("MIC_DATABASE_URL", url)
    monkeypatch.setenv("MIC_WAREHOUSE_DIR", str(tmp_path))
    assert main(["check"]) == 1
    output = capsys.readouterr().out
    assert "FAIL order_events: ExpectColumnValuesToBeInSet(company_id)" in output
    assert "FAIL parquet_order_events: ExpectColumnValuesToBeInSet(company_id)" in output
    assert "ok   parquet_order_events: ExpectColumnValuesToBeUnique(event_id)" in output
    assert (tmp_path / "data_docs" / "index.html").exists()
    with engine.connect() as connection:
        stored = connection.execute(
            select(quality_results.c.success, func.count()).group_by(quality_results.c.success)
        ).all()
    counts = {bool(success): int(n) for success, n in stored}
    assert counts[False] == 2 and counts[True] > 150
    engine.dispose()
