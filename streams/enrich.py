"""Enriched records: an `Event` plus company profiles -> the flat JSON of `schemas.warehouse`.

Pure functions. Every key of `column_names(family)` is present, null where it does not apply;
values are encoded as `schemas.warehouse` says (UTC `Z` timestamps, `YYYY-MM-DD` dates, money as
strings with exactly two decimals, `fee_rate` as a number).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import msgspec

from schemas.events import Event, MemberUpdated
from schemas.topics import Family
from schemas.warehouse import PROFILE_FIELDS, columns

Profile = Mapping[str, str | None]
"""A member's profile: `name`, `kind` and the `PROFILE_FIELDS`, as stored in the member state."""

PROFILE_KEYS: tuple[str, ...] = ("name", "kind", *PROFILE_FIELDS)

RELATED_COMPANY_FIELD: dict[Family, tuple[str, str] | None] = {
    Family.MEMBER: None,
    Family.ORDER: ("manufacturer_id", "manufacturer_"),
    Family.PATENT: ("buyer_id", "buyer_"),
    Family.FACTORING: ("debtor_id", "debtor_"),
}
"""The other company an event of the family may name, and the prefix of its enrichment columns."""

class MemberDirectory(Protocol):
    """Every worker's view of all members (replicated), for rule 1 and enrichment lookups."""

    def active_profile(self, company_id: str, at: datetime | None = None) -> Profile | None:
        """The profile of an active member (or of one that was active at `at`), else None."""
        ...

    def apply(self, company_id: str, member: dict[str, Any]) -> None:
        """Record a member state decided by this worker (read-your-writes before replication)."""
        ...

    def knows(self, company_id: str) -> bool:
        """Whether any state of the company is known (active or not)."""
        ...


_JSON = msgspec.json.Encoder(decimal_format="string")


def utc_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z` suffix (microseconds only when present)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return f"{moment.isoformat()[:-6]}Z"  # an aware UTC time's isoformat ends with "+00:00"


def event_day(event: Event) -> str:
    """The event-time day of aggregates: the UTC date of `occurred_at`."""
    return event.occurred_at.astimezone(UTC).date().isoformat()


def money_text(amount: Decimal) -> str:
    """Money as the warehouse string with exactly two decimals."""
    return f"{amount:.2f}"


def _encode_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "money":
        return money_text(Decimal(value))
    if kind == "date" and isinstance(value, date):
        return value.isoformat()
    if kind == "rate":
        return float(value)
    return value


def related_company(event: Event) -> str | None:
    """The `manufacturer_id` / `buyer_id` / `debtor_id` of the event, if its type has one."""
    spec = RELATED_COMPANY_FIELD[event.family]
    if spec is None:
        return None
    value = getattr(event.payload, spec[0], None)
    return value if isinstance(value, str) else None


_COMPANY, _RELATED, _CHANGED, _PAYLOAD = range(4)


@cache
def _plan(family: Family) -> tuple[tuple[str, int, str, str], ...]:
    """Per payload column of `family`: (name, source, source field, kind) -- computed once."""
    spec = RELATED_COMPANY_FIELD[family]
    prefix = spec[1] if spec else None
    plan = []
    for column in columns(family)[7:]:  # after the envelope's seven columns
        name = column.name
        if prefix and name.startswith(prefix) and name[len(prefix) :] in PROFILE_FIELDS:
            plan.append((name, _RELATED, name[len(prefix) :], column.kind))
        elif name in PROFILE_KEYS and (family is Family.MEMBER or name in PROFILE_FIELDS):
            plan.append((name, _COMPANY, name, column.kind))
        elif name == "changed_fields":
            plan.append((name, _CHANGED, name, column.kind))
        else:
            plan.append((name, _PAYLOAD, name, column.kind))
    return tuple(plan)


def enriched_record(
    event: Event,
    company: Profile | None,
    related: Profile | None = None,
    *,
    occurred_utc: datetime | None = None,
) -> dict[str, Any]:
    """The flat warehouse row of `event`.

    `company` is the profile of `company_id` (for member events: the profile as of this event);
    `related` the profile of the manufacturer/buyer/debtor when that company is an active member;
    `occurred_utc`, `occurred_at` in UTC when the caller has it already.
    """
    payload = event.payload
    row: dict[str, Any] = {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "occurred_at": utc_timestamp(occurred_utc or event.occurred_at),
        "source": event.source,
        "company_id": event.company_id,
        "trace_id": event.trace_id,
    }
    for name, source, field, kind in _plan(event.family):
        if source == _PAYLOAD:
            value = getattr(payload, field, None)
        elif source == _COMPANY:
            value = company.get(field) if company else None
        elif source == _RELATED:
            value = related.get(field) if related else None
        else:
            value = changed_fields(event)
        if value is None or value.__class__ is msgspec.UnsetType:
            row[name] = None
        elif kind == "money":
            row[name] = money_text(Decimal(value))
        elif kind == "date":
            row[name] = value.isoformat() if isinstance(value, date) else value
        elif kind == "rate":
            row[name] = float(value)
        else:
            row[name] = value
    return row


def changed_fields(event: Event) -> str | None:
    """Comma-separated sorted names of the fields a `member.updated` changed (None otherwise)."""
    if isinstance(event.payload, MemberUpdated):
        return ",".join(sorted(event.payload.changes()))
    return None


def encode_record(row: Mapping[str, Any]) -> bytes:
    """The JSON bytes of an enriched record."""
    return _JSON.encode(row)
