"""The enriched row builders (`streams.enrich`, compiled per payload type) against a plain reference
that reads `schemas.warehouse` column by column, on every event type the simulator makes and on the
corners it does not (unset and null fields, zero money, rates, missing and empty profiles)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from producers.simulator import SimulationConfig, generate
from schemas.decode import decode_event
from schemas.events import (
    Event,
    FactoringFunded,
    FactoringRequested,
    MemberLeft,
    MemberUpdated,
    OrderAccepted,
    OrderPlaced,
)
from schemas.topics import Family
from schemas.warehouse import PROFILE_FIELDS, column_names, columns
from streams.enrich import PROFILE_KEYS, RELATED_COMPANY_FIELD, Profile, enriched_record

COMPANY: Profile = {
    "name": 'ООО "Прибор"',
    "kind": "company",
    "region_code": "77",
    "sector": "it",
    "size": "small",
    "status": "resident",
    "state_corporation": None,
}
RELATED: Profile = {**COMPANY, "name": "ИП Петров", "region_code": "50", "state_corporation": "rostec"}


def reference_row(event: Event, company: Profile | None, related: Profile | None) -> dict[str, Any]:
    """The warehouse row as `schemas.warehouse` describes it, one column at a time."""
    family = event.family
    spec = RELATED_COMPANY_FIELD[family]
    prefix = spec[1] if spec else None
    moment = event.occurred_at.astimezone(UTC)
    row: dict[str, Any] = {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "occurred_at": moment.isoformat().replace("+00:00", "Z"),
        "source": event.source,
        "company_id": event.company_id,
        "trace_id": event.trace_id,
    }
    for column in columns(family)[len(row) :]:
        name = column.name
        value: Any
        if prefix and name.startswith(prefix) and name[len(prefix) :] in PROFILE_FIELDS:
            value = related.get(name[len(prefix) :]) if related else None
        elif name in PROFILE_KEYS and (family is Family.MEMBER or name in PROFILE_FIELDS):
            value = company.get(name) if company else None
        elif name == "changed_fields":
            payload = event.payload
            value = ",".join(sorted(payload.changes())) if isinstance(payload, MemberUpdated) else None
        else:
            value = getattr(event.payload, name, None)
        if value is None or value is msgspec.UNSET:
            row[name] = None
        elif column.kind == "money":
            row[name] = f"{Decimal(value):.2f}"
        elif column.kind == "date":
            row[name] = value.isoformat()
        elif column.kind == "rate":
            row[name] = float(value)
        else:
            row[name] = value
    return row


def _check(event: Event, company: Profile | None, related: Profile | None) -> None:
    encoded = enriched_record(event, company, related)
    assert list(json.loads(encoded)) == list(column_names(event.family))
    assert json.loads(encoded) == reference_row(event, company, related)


def test_every_simulated_event_type_is_enriched_as_the_columns_say() -> None:
    profiles = itertools.cycle([COMPANY, None, RELATED, {}])
    seen: set[str] = set()
    for record in itertools.islice(generate(SimulationConfig(seed=5, scale=0.02)), 4000):
        event = decode_event(record.value, topic=record.truth.topic)
        if isinstance(event, Event):
            seen.add(event.event_type)
            _check(event, next(profiles), next(profiles))
    assert len(seen) == 14, sorted(seen)


def _event(payload: Any, occurred_at: datetime, family_id: str = "7707083893") -> Event:
    return Event(
        event_id="0b7c0a57-7f3e-4c39-9a3e-8a0f1c2d3e4f",
        event_type={
            "MemberUpdated": "member.updated",
            "MemberLeft": "member.left",
            "OrderPlaced": "order.placed",
            "OrderAccepted": "order.accepted",
            "FactoringRequested": "factoring.requested",
            "FactoringFunded": "factoring.funded",
        }[type(payload).__name__],
        schema_version=1,
        occurred_at=occurred_at,
        source="erp-1",
        company_id=family_id,
        payload=payload,
        trace_id="t-1",
    )


MSK = timezone(timedelta(hours=3))


@pytest.mark.parametrize(
    "payload",
    [
        MemberUpdated(region_code="50"),  # state_corporation unset
        MemberUpdated(state_corporation=None, sector="it"),  # explicitly cleared
        MemberLeft(reason="closed"),
        OrderPlaced(
            order_id="ORD-1",
            industry="metal_processing",
            title="Корпус",
            quantity=1,
            budget_rub=Decimal("0.00"),
            deadline=date(2020, 1, 2),
        ),
        OrderPlaced(
            order_id="ORD-2",
            industry="metal_processing",
            title="x",
            quantity=2,
            budget_rub=Decimal("5"),
            deadline=date(2099, 12, 31),
        ),
        OrderAccepted(order_id="ORD-1", manufacturer_id="7707083893"),
        FactoringRequested(
            request_id="F-1",
            debtor_id="7707083893",
            invoice_amount_rub=Decimal("10000000000000.00"),
            due_date=date(2000, 1, 1),
        ),
        FactoringFunded(request_id="F-1", advance_rub=Decimal("1.5"), fee_rate=0.0125),
    ],
    ids=lambda payload: type(payload).__name__,
)
@pytest.mark.parametrize(
    "moment", [datetime(2024, 2, 29, 23, 30, tzinfo=MSK), datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)]
)
@pytest.mark.parametrize(
    "profiles", [(COMPANY, RELATED), (None, None), ({}, COMPANY)], ids=["both", "none", "empty"]
)
def test_corners_are_enriched_as_the_columns_say(
    payload: Any, moment: datetime, profiles: tuple[Profile | None, Profile | None]
) -> None:
    _check(_event(payload, moment), *profiles)


def test_a_time_given_in_another_offset_is_written_in_utc() -> None:
    event = _event(MemberLeft(reason="closed"), datetime(2024, 2, 29, 23, 30, tzinfo=MSK))
    row = json.loads(enriched_record(event, COMPANY, occurred_utc=event.occurred_at))
    assert row["occurred_at"] == "2024-02-29T20:30:00Z"
