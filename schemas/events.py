"""Typed events of contract v1: the envelope (`Event`) and the 14 payloads.

Payload structs hold the contract's fields with Python types: money is `Decimal` (exact), dates are
`datetime.date`, enums are `str` literals, optional fields default to None. Build events in code with
keyword arguments; `schemas.decode.decode_event` is the only way bytes become an `Event`, and it
enforces every rule of the contract (constructors do not validate).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import msgspec

from schemas.fields import (
    CompanySize,
    Day,
    EntityId,
    FeeRate,
    Inn,
    MemberKind,
    MemberStatus,
    Money,
    Name,
    OrderIndustry,
    PatentDeal,
    PatentKind,
    PatentOffer,
    PositiveMoney,
    Quantity,
    RegionCode,
    Sector,
    StateCorporation,
    Text,
)
from schemas.topics import Family


class Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of the 14 payload structs (unknown fields are rejected; None defaults are not encoded)."""


# --- Membership (topic mic.membership) ---------------------------------------------------------


class MemberJoined(Payload, frozen=True):
    """`member.joined`: a company joins the cluster; `company_id` is the member."""

    name: Name
    kind: MemberKind
    status: MemberStatus
    region_code: RegionCode
    sector: Sector
    size: CompanySize
    state_corporation: StateCorporation | None
    """Required key; null means the member belongs to no state corporation."""


class MemberUpdated(Payload, frozen=True):
    """`member.updated`: a non-empty subset of the `member.joined` fields; an absent or null field
    is not changed, except `state_corporation`, where null means "no state corporation".

    In Python, None = not changed, but `state_corporation` defaults to `msgspec.UNSET` (not changed)
    and None there means "changed to no state corporation". Use `changes()` rather than reading the
    fields one by one.
    """

    name: Name | None = None
    kind: MemberKind | None = None
    status: MemberStatus | None = None
    region_code: RegionCode | None = None
    sector: Sector | None = None
    size: CompanySize | None = None
    state_corporation: StateCorporation | msgspec.UnsetType | None = msgspec.UNSET

    def changes(self) -> dict[str, str | None]:
        """The changed profile fields and their new values (`state_corporation` may map to None)."""
        changed: dict[str, str | None] = {
            name: value
            for name in ("name", "kind", "status", "region_code", "sector", "size")
            if (value := getattr(self, name)) is not None
        }
        if not isinstance(self.state_corporation, msgspec.UnsetType):
            changed["state_corporation"] = self.state_corporation
        return changed


class MemberLeft(Payload, frozen=True):
    """`member.left`: the company leaves the cluster."""

    reason: Text | None = None


# --- OEM manufacturing board orders (topic mic.orders) --------------------------------------------


class OrderPlaced(Payload, frozen=True):
    """`order.placed`: `company_id` (the customer) places an order."""

    order_id: EntityId
    industry: OrderIndustry
    title: Text
    quantity: Quantity
    budget_rub: Money
    deadline: Day


class OrderAccepted(Payload, frozen=True):
    """`order.accepted`: a member manufacturer takes the order."""

    order_id: EntityId
    manufacturer_id: Inn


class OrderCompleted(Payload, frozen=True):
    """`order.completed`: the order is delivered for `amount_rub`."""

    order_id: EntityId
    amount_rub: Money


class OrderCancelled(Payload, frozen=True):
    """`order.cancelled`: a placed or accepted order is cancelled."""

    order_id: EntityId
    reason: Text | None = None


# --- Patent board (topic mic.patents) -------------------------------------------------------------


class PatentListed(Payload, frozen=True):
    """`patent.listed`: `company_id` (the rights holder) offers a patent."""

    patent_id: EntityId
    kind: PatentKind
    title: Text
    offer: PatentOffer
    price_rub: Money


class PatentDealClosed(Payload, frozen=True):
    """`patent.deal_closed`: a sale (ends the listing) or a license (may repeat)."""

    patent_id: EntityId
    buyer_id: Inn
    deal: PatentDeal
    amount_rub: Money


class PatentWithdrawn(Payload, frozen=True):
    """`patent.withdrawn`: the listing ends without a sale."""

    patent_id: EntityId


# --- Factoring (topic mic.factoring) --------------------------------------------------------------


class FactoringRequested(Payload, frozen=True):
    """`factoring.requested`: `company_id` (the supplier) assigns a receivable on `debtor_id`."""

    request_id: EntityId
    debtor_id: Inn
    invoice_amount_rub: PositiveMoney
    due_date: Day


class FactoringFunded(Payload, frozen=True):
    """`factoring.funded`: the advance is paid; `advance_rub` must not exceed the request's
    `invoice_amount_rub`.

    That limit is a cross-event rule: the stream checks it; decoding cannot (it sees one event).
    """

    request_id: EntityId
    advance_rub: PositiveMoney
    fee_rate: FeeRate


class FactoringRepaid(Payload, frozen=True):
    """`factoring.repaid`: the debtor paid."""

    request_id: EntityId
    amount_rub: Money


class FactoringDefaulted(Payload, frozen=True):
    """`factoring.defaulted`: the debtor did not pay; `outstanding_rub` is left."""

    request_id: EntityId
    outstanding_rub: Money


# --- Envelope -------------------------------------------------------------------------------------

_FAMILIES: dict[str, Family] = {family.value: family for family in Family}


@lru_cache(maxsize=256)
def _family_of_type(event_type: str) -> Family:
    """Memoised: `Event.family` is read several times per decided event."""
    return _FAMILIES[event_type.partition(".")[0]]


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One contract event: the envelope with its typed payload.

    `occurred_at` is timezone-aware (it keeps the offset it was sent with); `company_id` is an INN.
    Field order is the wire order of `schemas.encode.encode_event`.
    """

    event_id: str
    event_type: str
    schema_version: int
    occurred_at: datetime
    source: str
    company_id: str
    payload: Payload
    trace_id: str | None = None

    @property
    def family(self) -> Family:
        """The event's family (the part of `event_type` before the dot)."""
        return _family_of_type(self.event_type)
