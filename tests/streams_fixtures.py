"""Small event fixtures for the stream tests, built with the schemas API."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from schemas.encode import encode_event
from schemas.events import (
    Event,
    FactoringDefaulted,
    FactoringFunded,
    FactoringRepaid,
    FactoringRequested,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    OrderAccepted,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    PatentDealClosed,
    PatentListed,
    PatentWithdrawn,
    Payload,
)
from schemas.inn import complete_inn

MSK = timezone(timedelta(hours=3))
T0 = datetime(2020, 9, 24, 10, 0, tzinfo=MSK)

CUSTOMER = complete_inn("770708389")
MAKER_MOSCOW = complete_inn("771234567")
MAKER_REGION = complete_inn("660012345")
SUPPLIER = complete_inn("500100732")
STRANGER = complete_inn("781234567")

_TYPES: dict[type[Payload], str] = {
    MemberJoined: "member.joined",
    MemberUpdated: "member.updated",
    MemberLeft: "member.left",
    OrderPlaced: "order.placed",
    OrderAccepted: "order.accepted",
    OrderCompleted: "order.completed",
    OrderCancelled: "order.cancelled",
    PatentListed: "patent.listed",
    PatentDealClosed: "patent.deal_closed",
    PatentWithdrawn: "patent.withdrawn",
    FactoringRequested: "factoring.requested",
    FactoringFunded: "factoring.funded",
    FactoringRepaid: "factoring.repaid",
    FactoringDefaulted: "factoring.defaulted",
}


def event(company_id: str, payload: Payload, *, minutes: int = 0, event_id: str | None = None) -> Event:
    """A valid event of `company_id` at T0 + `minutes`."""
    return Event(
        event_id=event_id or str(uuid.uuid4()),
        event_type=_TYPES[type(payload)],
        schema_version=1,
        occurred_at=T0 + timedelta(minutes=minutes),
        source="test.streams",
        company_id=company_id,
        payload=payload,
    )


def joined(
    company_id: str,
    *,
    region: str = "77",
    size: Literal["small", "medium", "large"] = "small",
    status: Literal["participant", "regional_partner"] = "participant",
    corporation: Any = None,
    minutes: int = 0,
) -> Event:
    return event(
        company_id,
        MemberJoined(
            name=f"Company {company_id}",
            kind="company",
            status=status,
            region_code=region,
            sector="electronics",
            size=size,
            state_corporation=corporation,
        ),
        minutes=minutes,
    )


def order_story(customer: str, maker: str, order_id: str, *, minutes: int = 0) -> list[Event]:
    """placed -> accepted -> completed for 1500.50 RUB."""
    return [
        event(
            customer,
            OrderPlaced(
                order_id=order_id,
                industry="metal_processing",
                title="Brackets",
                quantity=10,
                budget_rub=Decimal("2000.00"),
                deadline=date(2020, 12, 1),
            ),
            minutes=minutes,
        ),
        event(customer, OrderAccepted(order_id=order_id, manufacturer_id=maker), minutes=minutes + 1),
        event(
            customer, OrderCompleted(order_id=order_id, amount_rub=Decimal("1500.50")), minutes=minutes + 2
        ),
    ]


def patent_story(holder: str, buyer: str, patent_id: str) -> list[Event]:
    return [
        event(
            holder,
            PatentListed(
                patent_id=patent_id,
                kind="invention",
                title="Alloy",
                offer="both",
                price_rub=Decimal("100000"),
            ),
        ),
        event(
            holder,
            PatentDealClosed(patent_id=patent_id, buyer_id=buyer, deal="license", amount_rub=Decimal("5000")),
            minutes=5,
        ),
        event(holder, PatentWithdrawn(patent_id=patent_id), minutes=10),
    ]


def factoring_story(supplier: str, debtor: str, request_id: str, *, repaid: bool = True) -> list[Event]:
    end: Payload = (
        FactoringRepaid(request_id=request_id, amount_rub=Decimal("1000"))
        if repaid
        else FactoringDefaulted(request_id=request_id, outstanding_rub=Decimal("400"))
    )
    return [
        event(
            supplier,
            FactoringRequested(
                request_id=request_id,
                debtor_id=debtor,
                invoice_amount_rub=Decimal("1000"),
                due_date=date(2020, 11, 1),
            ),
        ),
        event(
            supplier,
            FactoringFunded(request_id=request_id, advance_rub=Decimal("800"), fee_rate=0.05),
            minutes=1,
        ),
        event(supplier, end, minutes=2),
    ]


def wire(e: Event) -> bytes:
    return encode_event(e)
