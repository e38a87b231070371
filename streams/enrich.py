"""Enriched records: an `Event` plus company profiles -> the flat JSON of `schemas.warehouse`.

Pure functions. Every key of `column_names(family)` is present, null where it does not apply;
values are encoded as `schemas.warehouse` says (UTC `Z` timestamps, `YYYY-MM-DD` dates, money as
strings with exactly two decimals, `fee_rate` as a number).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import msgspec
import msgspec.structs

from schemas.events import Event, MemberUpdated, Payload
from schemas.topics import Family
from schemas.warehouse import ENVELOPE_COLUMNS, PROFILE_FIELDS, columns

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


def money_text(amount: Decimal) -> str:
    """Money as the warehouse string with exactly two decimals."""
    return f"{amount:.2f}"


def related_company(event: Event) -> str | None:
    """The `manufacturer_id` / `buyer_id` / `debtor_id` of the event, if its type has one."""
    spec = RELATED_COMPANY_FIELD[event.family]
    if spec is None:
        return None
    value = getattr(event.payload, spec[0], None)
    return value if isinstance(value, str) else None


def _column_expression(
    family: Family, name: str, kind: str, fields: dict[str, msgspec.structs.FieldInfo], changes: bool
) -> str:
    """The Python expression of one payload-side column of `family` over `p` (the payload), `c` and
    `r` (the `get` of the company's and the related company's profile, or of an empty one)."""
    spec = RELATED_COMPANY_FIELD[family]
    prefix = spec[1] if spec else None
    if prefix and name.startswith(prefix) and name[len(prefix) :] in PROFILE_FIELDS:
        return f"r({name[len(prefix) :]!r})"
    if name in PROFILE_KEYS and (family is Family.MEMBER or name in PROFILE_FIELDS):
        return f"c({name!r})"
    if name == "changed_fields":
        return "','.join(sorted(p.changes()))" if changes else "None"
    if name not in fields:
        return "None"
    value = f"p.{name}"
    absent = f"{value} is None" + (f" or {value} is UNSET" if fields[name].default is msgspec.UNSET else "")
    if kind == "money":
        return f"(None if {absent} else f'{{{value}:.2f}}')"
    if kind == "rate":
        return f"(None if {absent} else float({value}))"
    if fields[name].default is msgspec.UNSET:
        return f"(None if {absent} else {value})"
    return value  # dates stay `date`: the encoder writes `YYYY-MM-DD`


def _row_source(family: Family, payload_type: type[Payload]) -> str:
    """The source of the row builder of one payload type: one dict display, columns in table order."""
    fields = {field.name: field for field in msgspec.structs.fields(payload_type)}
    changes = issubclass(payload_type, MemberUpdated)
    items = [f"{column.name!r}: e.{column.name}" for column in ENVELOPE_COLUMNS]
    items[[column.name for column in ENVELOPE_COLUMNS].index("occurred_at")] = "'occurred_at': t"
    items += [
        f"{column.name!r}: {_column_expression(family, column.name, column.kind, fields, changes)}"
        for column in columns(family)[len(ENVELOPE_COLUMNS) :]
    ]
    body = ",\n        ".join(items)
    return f"def build(e, p, c, r, t):\n    return {{\n        {body},\n    }}\n"


RowBuilder = Callable[[Event, Payload, Callable[[str], Any], Callable[[str], Any], datetime], dict[str, Any]]


@cache
def _builder(family: Family, payload_type: type[Payload]) -> RowBuilder:
    """The row builder of one payload type, compiled once (as `dataclasses` builds `__init__`): a
    dict display of attribute reads, the fastest way CPython has to make a dict of fixed keys."""
    namespace: dict[str, Any] = {"UNSET": msgspec.UNSET}
    source = _row_source(family, payload_type)
    exec(compile(source, f"<enriched row of {payload_type.__name__}>", "exec"), namespace)
    builder: RowBuilder = namespace["build"]
    return builder


_NO_PROFILE: Profile = {}


def enriched_record(
    event: Event,
    company: Profile | None,
    related: Profile | None = None,
    *,
    occurred_utc: datetime | None = None,
) -> bytes:
    """The flat warehouse row of `event`, as the JSON bytes of `schemas.warehouse`.

    `company` is the profile of `company_id` (for member events: the profile as of this event);
    `related` the profile of the manufacturer/buyer/debtor when that company is an active member;
    `occurred_utc`, `occurred_at` in UTC when the caller has it already. Dates and the timestamp are
    written by the encoder (`YYYY-MM-DD`; RFC 3339 with `Z`, microseconds only when present).
    """
    if occurred_utc is None or occurred_utc.tzinfo is not UTC:  # the encoder writes the offset it has
        occurred_utc = (occurred_utc or event.occurred_at).astimezone(UTC)
    payload = event.payload
    build = _builder(event.family, payload.__class__)
    row = build(event, payload, (company or _NO_PROFILE).get, (related or _NO_PROFILE).get, occurred_utc)
    return _JSON.encode(row)
