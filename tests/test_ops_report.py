"""`mic-pipeline report` over a small warehouse landed by the SQL sink's own code (its Alembic
migrations create the tables and views): known figures in the CSV files and the HTML, each chart's SQL
shown exactly as it ran, a self-contained page."""

from __future__ import annotations

import csv
import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import pytest
from sinks_records import BASE_TIME, company, encode, record

from mic_pipeline.ops.report import write_report
from mic_pipeline.ops.report_queries import FIGURES
from schemas.deadletter import build_dead_letter
from schemas.reasons import DeadLetterReason
from schemas.topics import DEADLETTER_TOPIC, Family
from sinks.batch import Batch, SourceRecord
from sinks.sql.sink import SqlSink

MEMBERS = [
    # index, status, region, size, sector, state corporation
    (0, "participant", "77", "small", "electronics", "rostec"),
    (1, "participant", "77", "medium", "it", None),
    (2, "participant", "77", "large", "aviation", "rostec"),
    (3, "regional_partner", "50", "small", "metal_processing", None),
    (4, "regional_partner", "50", "medium", "metal_processing", None),
    (5, "regional_partner", "78", "small", "light_industry", None),
    (6, "regional_partner", "16", "small", "metal_processing", "rosatom"),
]
PROFILES = {
    i: dict(region_code=r, sector=s, size=z, status=st, state_corporation=c) for i, st, r, z, s, c in MEMBERS
}


def at(hours: float) -> dt.datetime:
    return BASE_TIME + dt.timedelta(hours=hours)


def with_profile(index: int, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}{name}": value for name, value in PROFILES[index].items()}


def warehouse_events() -> list[tuple[Family, dict[str, Any]]]:
    member, order, patent, factoring = Family.MEMBER, Family.ORDER, Family.PATENT, Family.FACTORING
    events: list[tuple[Family, dict[str, Any]]] = [
        (
            member,
            record(
                member, "member.joined", company(i), at(i), name=f"C{i}", kind="company", **with_profile(i)
            ),
        )
        for i, *_ in MEMBERS
    ]
    events.append((member, record(member, "member.left", company(1), at(10), **with_profile(1))))

    def order_event(event_type: str, order_id: str, hours: float, **fields: Any) -> None:
        events.append(
            (
                order,
                record(
                    order, event_type, company(0), at(hours), order_id=order_id, **with_profile(0), **fields
                ),
            )
        )

    placed = dict(title="Brackets", quantity=5, budget_rub="5000.00", deadline="2020-12-01")
    order_event("order.placed", "o1", 20, industry="metal_processing", **placed)
    order_event("order.accepted", "o1", 21, manufacturer_id=company(3), **with_profile(3, "manufacturer_"))
    order_event("order.completed", "o1", 700, amount_rub="1500.25")
    order_event("order.placed", "o2", 22, industry="metal_processing", **placed)
    order_event("order.accepted", "o2", 23, manufacturer_id=company(6), **with_profile(6, "manufacturer_"))
    order_event("order.completed", "o2", 800, amount_rub="2500.75")
    order_event("order.placed", "o3", 24, industry="light_industry", **placed)
    order_event("order.accepted", "o3", 25, manufacturer_id=company(2), **with_profile(2, "manufacturer_"))
    order_event("order.cancelled", "o3", 26)

    def patent_event(event_type: str, patent_id: str, hours: float, **fields: Any) -> None:
        events.append(
            (
                patent,
                record(
                    patent,
                    event_type,
                    company(2),
                    at(hours),
                    patent_id=patent_id,
                    **with_profile(2),
                    **fields,
                ),
            )
        )

    patent_event(
        "patent.listed", "p1", 30, kind="invention", title="Sensor", offer="both", price_rub="900.00"
    )
    patent_event("patent.deal_closed", "p1", 31, buyer_id=company(4), deal="license", amount_rub="100.00")
    patent_event("patent.deal_closed", "p1", 32, buyer_id=company(5), deal="license", amount_rub="150.00")
    patent_event("patent.deal_closed", "p1", 33, buyer_id=company(4), deal="sale", amount_rub="800.00")
    patent_event(
        "patent.listed", "p2", 34, kind="trademark", title="Mark", offer="license", price_rub="50.00"
    )
    patent_event("patent.deal_closed", "p2", 35, buyer_id=company(3), deal="license", amount_rub="40.00")

    def factoring_event(event_type: str, request_id: str, hours: float, **fields: Any) -> None:
        events.append(
            (
                factoring,
                record(
                    factoring,
                    event_type,
                    company(3),
                    at(hours),
                    request_id=request_id,
                    **with_profile(3),
                    **fields,
                ),
            )
        )

    for request_id, invoice, ending in (
        ("f1", "1000.00", "repaid"),
        ("f2", "2000.00", "repaid"),
        ("f3", "3000.00", "defaulted"),
    ):
        factoring_event(
            "factoring.requested",
            request_id,
            40,
            debtor_id=company(0),
            invoice_amount_rub=invoice,
            due_date="2020-12-31",
        )
        factoring_event("factoring.funded", request_id, 41, advance_rub="500.00", fee_rate=0.02)
        if ending == "repaid":
            factoring_event("factoring.repaid", request_id, 42, amount_rub=invoice)
        else:
            factoring_event("factoring.defaulted", request_id, 42, outstanding_rub="2500.00")
    factoring_event(
        "factoring.requested",
        "f4",
        43,
        debtor_id=company(0),
        invoice_amount_rub="4000.00",
        due_date="2020-12-31",
    )
    return events  # fmt: skip


def dead_letter_values() -> list[bytes]:
    reasons = [DeadLetterReason.MALFORMED, DeadLetterReason.MALFORMED, DeadLetterReason.UNKNOWN_COMPANY]
    return [
        build_dead_letter(
            reason=reason,
            detail="test",
            original_topic="mic.orders",
            original_partition=0,
            original_offset=offset,
            original_key=None,
            original_value=b"{",
            event_id=None,
            event_type=None,
            failed_at=at(50),
        )
        for offset, reason in enumerate(reasons)
    ]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{root / 'warehouse.db'}"
    sink = SqlSink.for_pipeline(url, lambda name: name)
    try:
        for family in Family:
            values = [encode(row) for f, row in warehouse_events() if f is family]
            records = tuple(SourceRecord(family.enriched_topic, 0, i, None, v) for i, v in enumerate(values))
            assert sink.write(Batch(family.enriched_topic, 0, records)) == []
        letters = tuple(
            SourceRecord(DEADLETTER_TOPIC, 0, i, None, v) for i, v in enumerate(dead_letter_values())
        )
        assert sink.write(Batch(DEADLETTER_TOPIC, 0, letters)) == []
    finally:
        sink.close()
    write_report(url, root / "out", seed_scale=0.001)
    return root / "out"


def read_csv(report_dir: Path, name: str) -> list[dict[str, str]]:
    with (report_dir / f"{name}.csv").open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_membership_figures(report_dir: Path) -> None:
    regions = {
        (r["status"], r["region"]): r["members"] for r in read_csv(report_dir, "members_by_region_status")
    }
    assert regions == {
        ("participant", "Moscow (77)"): "2",  # company 1 left
        ("regional_partner", "Moscow Region (50)"): "2",
        ("regional_partner", "St Petersburg (78)"): "1",
        ("regional_partner", "other regions"): "1",
    }
    corporations = {
        r["state_corporation"]: r["companies"] for r in read_csv(report_dir, "state_corporations")
    }
    assert corporations == {"rostec": "2", "rosatom": "1"}
    comparison = {r["measure"]: (r["seed"], r["warehouse"]) for r in read_csv(report_dir, "seed_comparison")}
    assert comparison["participants in Moscow (77)"] == ("17", "2")
    assert comparison["SME share of participants"] == ("0.9000", "0.5000")
    assert comparison["regional partners"] == ("6", "4")
    assert comparison["regional partners in Moscow Region (50)"] == ("0.6200", "0.5000")
    assert comparison["regional partners in St Petersburg (78)"] == ("0.0500", "0.2500")
    assert comparison["state-corporation companies"] == ("0", "3")


def test_oem_patent_and_factoring_figures(report_dir: Path) -> None:
    industries = {r["industry"]: r for r in read_csv(report_dir, "oem_orders_by_industry")}
    assert industries["metal_processing"] == {
        "industry": "metal_processing", "placed": "2", "accepted": "2", "completed": "2", "cancelled": "0",
        "completed_rub": "4001.00",
    }  # fmt: skip
    assert industries["light_industry"]["cancelled"] == "1"
    assert industries["light_industry"]["completed_rub"] == "0.00"
    regions = {
        r["manufacturer_region"]: (r["accepted_orders"], r["share"])
        for r in read_csv(report_dir, "oem_manufacturing_by_region")
    }
    assert regions == {
        "Moscow (77)": ("1", "0.3333"),
        "Moscow Region (50)": ("1", "0.3333"),
        "other regions": ("1", "0.3333"),
    }
    deals = {
        (r["kind"], r["deal"]): (r["deals"], r["amount_rub"])
        for r in read_csv(report_dir, "patent_deals_by_kind")
    }
    assert deals == {
        ("invention", "license"): ("2", "250.00"),
        ("invention", "sale"): ("1", "800.00"),
        ("trademark", "license"): ("1", "40.00"),
    }
    (totals,) = read_csv(report_dir, "factoring_totals")
    assert totals == {
        "requests": "4", "invoiced_rub": "10000.00", "funded": "3", "advanced_rub": "1500.00",
        "repaid": "2", "defaulted": "1", "default_rate": "0.3333",
    }  # fmt: skip
    letters = {r["reason"]: r["dead_letters"] for r in read_csv(report_dir, "dead_letters_by_reason")}
    assert letters == {"malformed": "2", "unknown_company": "1"}


def test_html_shows_each_figure_with_its_sql_and_csv_values(report_dir: Path) -> None:
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=['\"]https?:", page), "the page must be self-contained"
    shown_sql = [html.unescape(s) for s in re.findall(r"<pre class='sql'>(.*?)</pre>", page, re.S)]
    assert shown_sql == [figure.sql for figure in FIGURES]
    for figure in FIGURES:
        section = page.split(f"<section id='{figure.name}'>", 1)[1].split("</section>", 1)[0]
        assert "<svg" in section
        for row in read_csv(report_dir, figure.name):
            cells = "".join(f"<td>{html.escape(value)}</td>" for value in row.values())
            assert cells in section, (figure.name, row)
