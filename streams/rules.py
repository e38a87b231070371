"""Business rule 2 of the contract: lifecycles of members, orders, patents and factoring requests.

Pure functions over JSON-able state values (what the faust table stores). `apply_event` takes the
current state of the event's entity (None = never seen) and returns either the new state or a
`Violation` with the dead-letter reason and a human detail.

State values are dicts with `s` (the lifecycle state) plus what later events and the aggregates
need (industry, kind, amounts). (The processor adds `applied`, see `streams.processor`.)

One rule is not a transition: `factoring.funded` with `advance_rub` above the request's invoice
amount. The contract states it as a field range ("advance_rub > 0, <= invoice amount"), so it is a
`schema_violation` (the field is out of its range), detected here because only the stream knows
the invoice amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal
from functools import lru_cache
from typing import Any

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
)
from schemas.reasons import DeadLetterReason
from schemas.topics import Family

State = dict[str, Any]
MOSCOW_REGIONS = frozenset({"77", "50"})
MEMBER = Family.MEMBER
"""`Family.MEMBER` for code run per record: on Python 3.11 reading a member off its enum class goes
through `EnumType.__getattr__` (~10 times a global's cost)."""


@dataclass(frozen=True)
class Violation:
    """Why an event breaks its entity's rules."""

    reason: DeadLetterReason
    detail: str


def entity_key(event: Event) -> str:
    """The state-table key of the event's entity: member, order, patent or factoring request."""
    family = event.family
    if family is MEMBER:
        return f"m:{event.company_id}"
    prefix, id_field = _ENTITY_ID[family]
    return f"{prefix}{event.company_id}:{getattr(event.payload, id_field)}"


_ENTITY_ID: dict[Family, tuple[str, str]] = {
    Family.ORDER: ("o:", "order_id"),
    Family.PATENT: ("p:", "patent_id"),
    Family.FACTORING: ("f:", "request_id"),
}
"""Key prefix and entity id field of the business families."""


def is_active_member(state: State | None) -> bool:
    """Whether a member state is an active member (joined, not left)."""
    return state is not None and state.get("s") == "active"


def _invalid(event: Event, state: State | None) -> Violation:
    current = state.get("s") if state else "none"
    return Violation(
        DeadLetterReason.INVALID_TRANSITION, f"{event.event_type} not allowed in state {current!r}"
    )


def _next(state: State | None, event: Event, **changes: Any) -> State:
    base: State = dict(state) if state else {}
    base.update(changes)
    return base


@lru_cache(maxsize=65_536)
def day_text(ordinal: int) -> str:
    """`YYYY-MM-DD` of a day ordinal, memoised: `date.isoformat` goes through `PyUnicode_FromFormat`
    (~4.5k instructions, 2% of a decided record's), and a backlog's events fall on few days (the
    contract's whole range has 36,525)."""
    return date.fromordinal(ordinal).isoformat()


def _day(event: Event) -> str | None:
    """The UTC date of the event, None when `occurred_at` has none (year 9999 at a negative offset
    or year 1 at a positive one: the conversion overflows; the decoder rejects both first)."""
    try:
        return event.occurred_at.astimezone(UTC).date().isoformat()
    except OverflowError:
        return None


def apply_event(
    state: State | None, event: Event, *, manufacturer_region: str | None = None, day: str | None = None
) -> State | Violation:
    """The entity's state after `event`, or the violation that makes `event` invalid.

    Business entities record the event-time facts the aggregates are derived from (days of each
    transition, amounts, and for `order.accepted` whether the manufacturer -- region
    `manufacturer_region` -- is outside Moscow and Moscow Region). `day` is the event's UTC date
    when the caller has it already.
    """
    p = event.payload
    s = state.get("s") if state else None
    if day is None:
        day = _day(event)
    if day is None:
        moment = event.occurred_at.isoformat()
        detail = f"$.occurred_at: {moment} is outside 2000-01-01T00:00:00Z..2099-12-31T23:59:59Z"
        return Violation(DeadLetterReason.SCHEMA_VIOLATION, detail)
    # `type(p) is` rather than `match`/`isinstance`: a failed class check against a msgspec Struct
    # costs ~0.7k instructions (its metaclass is not `type`, so CPython looks up and calls
    # `__instancecheck__`); the payload types are leaves of `Payload`, so the tests are the same
    if type(p) is MemberJoined:
        if s == "active":
            return _invalid(event, state)
        profile = {k: getattr(p, k) for k in ("name", "kind", "status", "region_code", "sector", "size")}
        profile["state_corporation"] = p.state_corporation
        seq = (state or {}).get("seq", 0) + 1
        return _next(state, event, s="active", profile=profile, seq=seq, left_at=None)
    elif type(p) is MemberUpdated:
        if s != "active" or state is None:
            return _invalid(event, state)
        profile = {**state["profile"], **p.changes()}
        return _next(state, event, profile=profile, seq=state["seq"] + 1)
    elif type(p) is MemberLeft:
        if s != "active" or state is None:
            return _invalid(event, state)
        left_at = event.occurred_at.timestamp()
        return _next(state, event, s="left", seq=state["seq"] + 1, left_at=left_at)
    elif type(p) is OrderPlaced:
        if s is not None:
            return _invalid(event, state)
        return _next(state, event, s="placed", industry=p.industry, placed=day)
    elif type(p) is OrderAccepted:
        if s != "placed":
            return _invalid(event, state)
        outside = manufacturer_region is not None and manufacturer_region not in MOSCOW_REGIONS
        return _next(
            state, event, s="accepted", manufacturer_id=p.manufacturer_id, accepted=day, outside=outside
        )
    elif type(p) is OrderCompleted:
        if s != "accepted":
            return _invalid(event, state)
        return _next(state, event, s="completed", completed=day, amount_rub=str(p.amount_rub))
    elif type(p) is OrderCancelled:
        if s not in ("placed", "accepted"):
            return _invalid(event, state)
        return _next(state, event, s="cancelled", cancelled=day)
    elif type(p) is PatentListed:
        if s is not None:
            return _invalid(event, state)
        return _next(
            state,
            event,
            s="listed",
            kind=p.kind,
            offer=p.offer,
            listed=day,
            price_rub=str(p.price_rub),
            deals=[],
        )
    elif type(p) is PatentDealClosed:
        if s != "listed" or state is None:
            return _invalid(event, state)
        deals = [*state["deals"], [day, str(p.amount_rub)]]
        return _next(state, event, s="sold" if p.deal == "sale" else "listed", deals=deals)
    elif type(p) is PatentWithdrawn:
        return _invalid(event, state) if s != "listed" else _next(state, event, s="withdrawn")
    elif type(p) is FactoringRequested:
        if s is not None:
            return _invalid(event, state)
        return _next(state, event, s="requested", invoice_rub=str(p.invoice_amount_rub), requested=day)
    elif type(p) is FactoringFunded:
        if s != "requested" or state is None:
            return _invalid(event, state)
        invoice = Decimal(state["invoice_rub"])
        if p.advance_rub > invoice:
            return Violation(
                DeadLetterReason.SCHEMA_VIOLATION,
                f"advance_rub {p.advance_rub} exceeds the invoice amount {invoice}",
            )
        return _next(state, event, s="funded", advance_rub=str(p.advance_rub), funded=day)
    elif type(p) is FactoringRepaid:
        if s != "funded":
            return _invalid(event, state)
        return _next(state, event, s="repaid", repaid=day, repaid_rub=str(p.amount_rub))
    elif type(p) is FactoringDefaulted:
        if s != "funded":
            return _invalid(event, state)
        return _next(state, event, s="defaulted", defaulted=day, defaulted_rub=str(p.outstanding_rub))
    raise TypeError(f"no lifecycle rule for {type(p).__name__}")
