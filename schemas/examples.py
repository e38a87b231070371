"""One valid example of every event type of contract v1.

Used by the tests, the decode benchmark and the JSON Schema export (each document carries its
example). The INNs are real-format numbers with valid check digits.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

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
from schemas.registry import spec_of

COMPANY_INN = "7707083893"
"""A legal entity (10 digits)."""
PARTNER_INN = "5001007322" + "59"
"""A sole proprietor (12 digits) - a regional partner in Moscow Region."""
MOSCOW = timezone(timedelta(hours=3))

EXAMPLE_PAYLOADS: tuple[Payload, ...] = (
    MemberJoined(
        name="OOO Prototip Mashinostroenie",
        kind="company",
        status="participant",
        region_code="77",
        sector="instrument_engineering",
        size="small",
        state_corporation=None,
    ),
    MemberUpdated(size="medium", state_corporation="rostec"),
    MemberLeft(reason="Moved production to another region"),
    OrderPlaced(
        order_id="ORD-2020-000117",
        industry="metal_processing",
        title="CNC milling of aluminium housings, batch of 500",
        quantity=500,
        budget_rub=Decimal("1250000.50"),
        deadline=date(2020, 12, 1),
    ),
    OrderAccepted(order_id="ORD-2020-000117", manufacturer_id=PARTNER_INN),
    OrderCompleted(order_id="ORD-2020-000117", amount_rub=Decimal("1187500.00")),
    OrderCancelled(order_id="ORD-2020-000118", reason="Customer changed the specification"),
    PatentListed(
        patent_id="RU2731234",
        kind="invention",
        title="Method of additive manufacturing of titanium lattice implants",
        offer="both",
        price_rub=Decimal("3500000"),
    ),
    PatentDealClosed(
        patent_id="RU2731234", buyer_id=PARTNER_INN, deal="license", amount_rub=Decimal("420000")
    ),
    PatentWithdrawn(patent_id="RU2731235"),
    FactoringRequested(
        request_id="FR-000042",
        debtor_id="7736207543",
        invoice_amount_rub=Decimal("860000.00"),
        due_date=date(2020, 11, 30),
    ),
    FactoringFunded(request_id="FR-000042", advance_rub=Decimal("774000.00"), fee_rate=0.018),
    FactoringRepaid(request_id="FR-000042", amount_rub=Decimal("860000.00")),
    FactoringDefaulted(request_id="FR-000043", outstanding_rub=Decimal("125000.75")),
)


def example_event(payload: Payload, *, index: int = 0, trace_id: str | None = None) -> Event:
    """A valid v1 event around `payload`, with a deterministic id derived from `index`."""
    spec = spec_of(type(payload))
    return Event(
        event_id=str(uuid.UUID(int=(0x5EED << 64) + index, version=4)),
        event_type=spec.event_type,
        schema_version=spec.schema_version,
        occurred_at=datetime(2020, 9, 24, 10, 15, 0, tzinfo=MOSCOW) + timedelta(seconds=index),
        source="mic-platform",
        company_id=COMPANY_INN,
        payload=payload,
        trace_id=trace_id,
    )


def example_events() -> tuple[Event, ...]:
    """One event of each of the 14 types, in contract order."""
    return tuple(example_event(payload, index=i) for i, payload in enumerate(EXAMPLE_PAYLOADS))
