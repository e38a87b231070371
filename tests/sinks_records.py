"""Enriched records for the sink tests: realistic lifecycles in the exact `schemas.warehouse` shape.

`scenario(n_companies, seed)` builds member, order, patent and factoring events whose lifecycles are
valid, as the stream would publish them to `mic.<family>.enriched`.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import orjson

from schemas.inn import complete_inn
from schemas.topics import Family
from schemas.warehouse import column_names

BASE_TIME = dt.datetime(2020, 9, 1, 9, 0, tzinfo=dt.UTC)
PROFILE = {
    "region_code": "77",
    "sector": "electronics",
    "size": "small",
    "status": "participant",
    "state_corporation": None,
}


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(
    family: Family, event_type: str, company_id: str, at: dt.datetime, **fields: Any
) -> dict[str, Any]:
    """One enriched record: every column present, envelope filled, `fields` on top."""
    row: dict[str, Any] = dict.fromkeys(column_names(family))
    row.update(
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        schema_version=1,
        occurred_at=stamp(at),
        source="test",
        company_id=company_id,
    )
    if family is not Family.MEMBER:
        row.update(PROFILE)
    row.update(fields)
    unknown = set(row) - set(column_names(family))
    assert not unknown, unknown
    return row


def encode(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row)


def company(index: int) -> str:
    return complete_inn(f"77{index:07d}")


def scenario(n_companies: int, seed: int = 1) -> list[tuple[Family, dict[str, Any]]]:
    """Valid event rows of `n_companies` members, each with an order, a patent and a factoring."""
    rng = random.Random(seed)
    events: list[tuple[Family, dict[str, Any]]] = []
    for index in range(n_companies):
        inn = company(index)
        at = BASE_TIME + dt.timedelta(minutes=index)
        events.append(
            (
                Family.MEMBER,
                record(
                    Family.MEMBER,
                    "member.joined",
                    inn,
                    at,
                    name=f"Company {index}",
                    kind="company",
                    **PROFILE,
                ),
            )
        )
        order_id = f"o-{index}"
        events.append(
            (
                Family.ORDER,
                record(
                    Family.ORDER,
                    "order.placed",
                    inn,
                    at + dt.timedelta(hours=1),
                    order_id=order_id,
                    industry="metal_processing",
                    title="Brackets",
                    quantity=rng.randint(1, 100),
                    budget_rub=f"{rng.randint(1, 10**6)}.{rng.randint(0, 99):02d}",
                    deadline="2020-12-01",
                ),
            )
        )
        events.append(
            (
                Family.ORDER,
                record(
                    Family.ORDER,
                    "order.accepted",
                    inn,
                    at + dt.timedelta(hours=2),
                    order_id=order_id,
                    manufacturer_id=company((index + 1) % n_companies),
                ),
            )
        )
        if index % 2 == 0:
            events.append(
                (
                    Family.ORDER,
                    record(
                        Family.ORDER,
                        "order.completed",
                        inn,
                        at + dt.timedelta(days=3),
                        order_id=order_id,
                        amount_rub="1000.50",
                    ),
                )
            )
        patent_id = f"p-{index}"
        events.append(
            (
                Family.PATENT,
                record(
                    Family.PATENT,
                    "patent.listed",
                    inn,
                    at + dt.timedelta(hours=1),
                    patent_id=patent_id,
                    kind="invention",
                    title="Sensor",
                    offer="both",
                    price_rub="50000.00",
                ),
            )
        )
        events.append(
            (
                Family.PATENT,
                record(
                    Family.PATENT,
                    "patent.deal_closed",
                    inn,
                    at + dt.timedelta(days=1),
                    patent_id=patent_id,
                    buyer_id=company((index + 2) % n_companies),
                    deal="license",
                    amount_rub="100.00",
                ),
            )
        )
        request_id = f"f-{index}"
        events.append(
            (
                Family.FACTORING,
                record(
                    Family.FACTORING,
                    "factoring.requested",
                    inn,
                    at + dt.timedelta(hours=3),
                    request_id=request_id,
                    debtor_id=company((index + 3) % n_companies),
                    invoice_amount_rub="9000.00",
                    due_date="2020-11-30",
                ),
            )
        )
        events.append(
            (
                Family.FACTORING,
                record(
                    Family.FACTORING,
                    "factoring.funded",
                    inn,
                    at + dt.timedelta(hours=5),
                    request_id=request_id,
                    advance_rub="8000.00",
                    fee_rate=0.02,
                ),
            )
        )
        if index % 3 == 0:
            events.append(
                (
                    Family.FACTORING,
                    record(
                        Family.FACTORING,
                        "factoring.defaulted",
                        inn,
                        at + dt.timedelta(days=40),
                        request_id=request_id,
                        outstanding_rub="8000.00",
                    ),
                )
            )
    return events
