"""Quality gates with Great Expectations: row suites with contract rules, per-row quarantine in both
sinks, and `mic-pipeline check`."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as ds
import pytest
from sinks_records import BASE_TIME, company, encode, record, scenario
from sqlalchemy import func, select

from mic_pipeline.cli import main
from schemas.topics import Family
from sinks.batch import Batch, SourceRecord
from sinks.parquet.sink import ParquetSink
from sinks.quality.gate import GxGate
from sinks.quality.suites import row_checks
from sinks.rows import decode_row
from sinks.sql.sink import SqlSink, make_engine
from sinks.sql.tables import EVENT_TABLES, quality_results, quarantined_rows

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


def test_each_failing_row_is_named_alone_with_its_expectations(gate: GxGate) -> None:
    rows = rows_of(Family.ORDER, scenario(10))
    rows[0]["industry"] = "shipbuilding"
    rows[3]["region_code"] = "00"
    rows[4]["occurred_at"] = dt.datetime(1999, 12, 31, tzinfo=dt.UTC)
    rows[5]["manufacturer_id"] = "12345"
    rows[6]["quantity"] = 0
    rows[6]["title"] = "A\x00B"
    verdict = gate.check(Family.ORDER, rows)
    named = {
        position: [f"{f.expectation}({f.column})" for f in failures]
        for position, failures in verdict.failed.items()
    }
    assert named == {
        0: ["ExpectColumnValuesToBeInSet(industry)"],
        3: ["ExpectColumnValuesToMatchRegex(region_code)"],
        4: ["ExpectColumnValuesToBeBetween(occurred_at)"],
        5: ["ExpectColumnValuesToMatchRegex(manufacturer_id)"],
        6: ["ExpectColumnValuesToMatchRegex(title)", "ExpectColumnValuesToBeBetween(quantity)"],
    }
    assert verdict.failed[0][0].value == "'shipbuilding'"
    assert verdict.failed[6][0].value == "'A\\x00B'"  # escaped, never raw
    assert "CONTRACT.md" in verdict.failed[4][0].rule


def test_the_verdict_on_a_row_does_not_depend_on_its_batch(gate: GxGate) -> None:
    rows = rows_of(Family.ORDER, scenario(10))
    rows[2]["amount_rub"] = Decimal("-1.00")
    alone = gate.check(Family.ORDER, [rows[2]]).failed[0]
    assert gate.check(Family.ORDER, rows).failed == {2: alone}
    twice = gate.check(Family.ORDER, [rows[2], rows[2]])  # no check looks at neighbours (uniqueness)
    assert twice.failed == {0: alone, 1: alone}


def test_every_gate_expectation_cites_a_contract_rule() -> None:
    for family in Family:
        checks = row_checks(family)
        assert checks
        for check in checks:
            assert check.rule.startswith("CONTRACT.md "), (family, check.label)
            assert check.expectation != "ExpectColumnValuesToBeUnique", "uniqueness depends on the batch"
            assert "mostly" not in check.arguments, "a row verdict cannot depend on the other rows"
        assert len({check.label for check in checks}) == len(checks)


def member(**change: Any) -> dict[str, Any]:
    row = record(
        Family.MEMBER, "member.joined", company(3), BASE_TIME, name="N", kind="company", **PROFILE_OF_MEMBER
    )
    row.update(change)
    return row


PROFILE_OF_MEMBER = {"region_code": "77", "sector": "it", "size": "small", "status": "participant"}


@pytest.mark.parametrize(
    ("change", "passes"),
    [
        ({"occurred_at": "2000-01-01T00:00:00Z"}, True),
        ({"occurred_at": "2099-12-31T23:59:59Z"}, True),
        ({"occurred_at": "1999-12-31T23:59:59.999999Z"}, False),
        ({"occurred_at": "2099-12-31T23:59:59.000001Z"}, False),
        ({"occurred_at": "9999-12-31T23:59:59Z"}, False),
        ({"occurred_at": "0001-01-01T00:00:00Z"}, False),
        ({"name": "x" * 300}, True),
        ({"name": "x" * 301}, False),
        ({"name": ""}, False),
        ({"name": "tab\tlf\ncr\r"}, True),
        ({"name": "A\u0000B"}, False),
        ({"name": "esc\u001b[31m"}, False),
        ({"name": "del\u007f"}, False),
        ({"name": "Рога и копыта"}, True),
        ({"company_id": "٧٧٠٠٠٠٠٠٠٠"}, False),  # Arabic-Indic digits are not INN digits
        ({"source": "Bad Source"}, False),
        ({"trace_id": "t" * 64}, True),
        ({"trace_id": "t" * 65}, False),
        ({"event_id": "not-a-uuid"}, False),
        ({"region_code": "00"}, False),
        ({"state_corporation": "gazprom"}, False),
    ],
)
def test_member_bounds_are_the_contracts_exactly(gate: GxGate, change: dict[str, Any], passes: bool) -> None:
    row = decode_row(Family.MEMBER, encode(member(**change)))
    assert gate.check(Family.MEMBER, [row]).passed is passes


@pytest.mark.parametrize(
    ("change", "passes"),
    [
        ({"budget_rub": "10000000000000.00"}, True),
        ({"budget_rub": "10000000000000.01"}, False),
        ({"budget_rub": "0.00"}, True),
        ({"budget_rub": "-0.01"}, False),
        ({"deadline": "2099-12-31"}, True),
        ({"deadline": "2100-01-01"}, False),
        ({"deadline": "2000-01-01"}, True),
        ({"deadline": "1999-12-31"}, False),
        ({"title": "t" * 500}, True),
        ({"title": "t" * 501}, False),
        ({"order_id": "o" * 65}, False),
        ({"quantity": 0}, False),
    ],
)
def test_order_bounds_are_the_contracts_exactly(gate: GxGate, change: dict[str, Any], passes: bool) -> None:
    row = record(
        Family.ORDER,
        "order.placed",
        company(1),
        BASE_TIME,
        order_id="o1",
        industry="light_industry",
        title="t",
        quantity=1,
        budget_rub="1.00",
        deadline="2020-10-01",
    )
    row.update(change)
    assert gate.check(Family.ORDER, [decode_row(Family.ORDER, encode(row))]).passed is passes


@pytest.mark.parametrize(
    ("change", "passes"),
    [
        ({"invoice_amount_rub": "0.00"}, False),
        ({"invoice_amount_rub": "0.01"}, True),
        ({"fee_rate": 0.0}, False),
        ({"fee_rate": 1.0}, False),
        ({"fee_rate": 0.5}, True),
        ({"due_date": "2100-01-01"}, False),
    ],
)
def test_factoring_bounds_are_the_contracts_exactly(
    gate: GxGate, change: dict[str, Any], passes: bool
) -> None:
    row = record(
        Family.FACTORING,
        "factoring.requested",
        company(1),
        BASE_TIME,
        request_id="r1",
        debtor_id=company(2),
        invoice_amount_rub="5.00",
        due_date="2020-10-01",
    )
    row.update(change)
    assert gate.check(Family.FACTORING, [decode_row(Family.FACTORING, encode(row))]).passed is passes


def far_future_batch(topic: str) -> Batch:
    """The issue's case: a member.joined dated 9999-12-31 between valid events of its batch."""
    rows = [member(), member(occurred_at="9999-12-31T23:59:59Z"), member(company_id=company(4))]
    return Batch(topic, 0, tuple(SourceRecord(topic, 0, 7 + i, None, encode(r)) for i, r in enumerate(rows)))


def test_both_sinks_quarantine_the_same_row_alone_and_land_the_rest(gate: GxGate, tmp_path: Path) -> None:
    topic = "x.mic.membership.enriched"
    batch = far_future_batch(topic)
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    assert SqlSink(engine, TOPICS, "x.mic.deadletter", gate).write(batch) == []
    parquet = ParquetSink(tmp_path / "pq", TOPICS, gate)
    assert parquet.write(batch) == []
    with engine.connect() as connection:
        landed = connection.execute(select(func.count()).select_from(EVENT_TABLES[Family.MEMBER])).scalar()
        [kept] = connection.execute(select(quarantined_rows)).all()
    assert landed == 2
    assert kept.record_offset == 8 and "ExpectColumnValuesToBeBetween" in kept.failures
    dataset = ds.dataset(tmp_path / "pq" / "member_events", format="parquet", partitioning="hive")
    assert dataset.to_table().num_rows == 2
    [file] = list((tmp_path / "pq" / "_quarantine" / "member_events").glob("*.json"))
    assert file.name == f"{topic}+0+0000000000000000008.json"
    assert orjson.loads(file.read_bytes())["event_id"] == kept.event_id
    parquet.close()
    engine.dispose()


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


def test_one_call_for_several_tables_attributes_each_failure_to_its_table_row_and_column(
    gate: GxGate,
) -> None:
    events = scenario(6)
    orders, patents = rows_of(Family.ORDER, events), rows_of(Family.PATENT, events)
    orders[4]["manufacturer_region_code"] = "00"  # stacked with every other region_code column
    patents[1]["buyer_id"] = "12345"  # stacked with company_id and the other counterparties
    patents[2]["amount_rub"] = Decimal("-5.00")
    verdicts = gate.check_all({Family.ORDER: orders, Family.PATENT: patents, Family.MEMBER: []})
    assert verdicts[Family.MEMBER].passed
    assert {i: [f.column for f in fs] for i, fs in verdicts[Family.ORDER].failed.items()} == {
        4: ["manufacturer_region_code"]
    }
    assert {i: [f.column for f in fs] for i, fs in verdicts[Family.PATENT].failed.items()} == {
        1: ["buyer_id"],
        2: ["amount_rub"],
    }
    assert verdicts[Family.PATENT].failed[1][0].rule.endswith("(buyer_id)")
    assert verdicts == {
        f: gate.check(f, r) for f, r in ((Family.ORDER, orders), (Family.PATENT, patents))
    } | {Family.MEMBER: verdicts[Family.MEMBER]}
