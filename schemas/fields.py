"""Constrained field types of the contract, shared by the envelope and the payloads.

Rules msgspec checks while decoding are expressed as `msgspec.Meta` (patterns, lengths, ranges);
rules it cannot express (INN check digits, money) are marked with `MoneyRule` / `InnRule` in the
`Annotated` metadata and enforced by `schemas.decode` right after the typed decode. Where a cached
Python check is cheaper than msgspec's per-value regex (INN, `source`: a few thousand distinct values
recur), the pattern is only documented (`extra_json_schema`) and `schemas.decode` checks it. Patterns
end in `\\Z` (not `$`, which would accept a trailing newline); the JSON Schema export rewrites them
to ECMA-262 syntax.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

MAX_MONEY = Decimal(10) ** 13
"""Largest money amount the contract allows (10^13 roubles)."""
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)
"""Dates, and `occurred_at` in UTC (from 00:00:00 of the first to 23:59:59 of the last day), lie in
these years (contract clarification of 2026-11-30)."""
DATE_RANGE = "2000-01-01..2099-12-31"


@dataclass(frozen=True)
class MoneyRule:
    """Marks a money field: a JSON number (never a string), at most 2 decimals, at most 10^13.

    `positive` means the amount must be > 0 (otherwise >= 0).
    """

    positive: bool


@dataclass(frozen=True)
class InnRule:
    """Marks a field holding an INN whose check digits must be valid (`schemas.inn`)."""


UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)
OCCURRED_AT_PATTERN = (
    r"^(20[0-9]{2}-[0-9]{2}-[0-9]{2}|1999-12-31|2100-01-01)[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)
"""RFC3339_PATTERN with the local date as close to the UTC range as a pattern can say: an offset can
move 1999-12-31 and 2100-01-01 into it (the exact rule is checked by `schemas.decode`)."""
DATE_PATTERN = r"^20[0-9]{2}-[0-9]{2}-[0-9]{2}\Z"
INN_PATTERN = r"^[0-9]{10}([0-9]{2})?\Z"
SOURCE_PATTERN = r"^[a-z0-9_.-]{1,64}\Z"
NO_CONTROL_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*\Z"
"""Text without C0 control characters (TAB, LF and CR allowed) or DEL. Only documented (the JSON
Schema `pattern` of free text): `schemas.decode` checks it faster than a per-value regex could."""
_NO_CONTROL = "No control characters (U+0000-U+001F except TAB, LF, CR; U+007F)."

EventId = Annotated[
    str,
    msgspec.Meta(pattern=UUID_PATTERN, description="A UUID (any version) in canonical 8-4-4-4-12 form."),
]
EventType = Annotated[str, msgspec.Meta(description="`<family>.<action>`, one of the contract's types.")]
SchemaVersion = Annotated[int, msgspec.Meta(ge=1, description="Version of the event type's schema.")]
OccurredAt = Annotated[
    str,
    msgspec.Meta(
        pattern=OCCURRED_AT_PATTERN,
        description="Business time: RFC 3339 date-time with an offset (`+03:00` or `Z`), in UTC between "
        "2000-01-01T00:00:00Z and 2099-12-31T23:59:59Z inclusive (the pattern bounds the local date; "
        "e.g. 1999-12-31T23:30:00-01:00 is valid, 1999-12-31T23:30:00+01:00 is not).",
    ),
]
Source = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        extra_json_schema={"pattern": SOURCE_PATTERN},
        description="The publishing system, 1-64 characters of `[a-z0-9_.-]`.",
    ),
]
Inn = Annotated[
    str,
    msgspec.Meta(
        min_length=10,
        max_length=12,
        extra_json_schema={"pattern": INN_PATTERN},
        description="INN: 10 digits (legal entity) or 12 digits (sole proprietor) with valid check digits "
        "(Federal Tax Service algorithm).",
    ),
    InnRule(),
]
TraceId = Annotated[
    str,
    msgspec.Meta(
        max_length=64,
        extra_json_schema={"pattern": NO_CONTROL_PATTERN},
        description=f"Passed through untouched. {_NO_CONTROL}",
    ),
]
EntityId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        extra_json_schema={"pattern": NO_CONTROL_PATTERN},
        description=_NO_CONTROL,
    ),
]
Text = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=500,
        extra_json_schema={"pattern": NO_CONTROL_PATTERN},
        description=_NO_CONTROL,
    ),
]
Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=300,
        extra_json_schema={"pattern": NO_CONTROL_PATTERN},
        description=_NO_CONTROL,
    ),
]
RegionCode = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(0[1-9]|[1-9][0-9])\Z",
        description="Russian federal subject code, `01`-`99` "
        "(77 Moscow, 50 Moscow Region, 78 St Petersburg).",
    ),
]
Money = Annotated[
    Decimal,
    msgspec.Meta(description="Roubles: a JSON number >= 0, at most 2 decimal places, at most 10^13."),
    MoneyRule(positive=False),
]
PositiveMoney = Annotated[
    Decimal,
    msgspec.Meta(description="Roubles: a JSON number > 0, at most 2 decimal places, at most 10^13."),
    MoneyRule(positive=True),
]
Quantity = Annotated[
    int, msgspec.Meta(ge=1, le=2**63 - 1, description="A count >= 1 (at most 2^63-1, SQL BIGINT).")
]
FeeRate = Annotated[float, msgspec.Meta(gt=0, lt=1, description="Fee as a fraction, 0 < r < 1.")]
Day = Annotated[
    date,
    msgspec.Meta(
        extra_json_schema={"pattern": DATE_PATTERN},
        description="A calendar date, `YYYY-MM-DD`, between 2000-01-01 and 2099-12-31.",
    ),
]

MemberKind = Literal["company", "sole_proprietor", "university", "research_institute"]
MemberStatus = Literal["participant", "regional_partner"]
Sector = Literal[
    "aviation",
    "space",
    "pharma",
    "electronics",
    "it",
    "nuclear",
    "biomed",
    "new_materials",
    "instrument_engineering",
    "metal_processing",
    "light_industry",
    "energy",
    "transport",
    "education",
    "other",
]
CompanySize = Literal["small", "medium", "large"]
StateCorporation = Literal["rostec", "rosatom", "roscosmos"]
OrderIndustry = Literal["metal_processing", "instrument_engineering", "light_industry"]
PatentKind = Literal["invention", "utility_model", "industrial_design", "trademark"]
PatentOffer = Literal["sale", "license", "both"]
PatentDeal = Literal["sale", "license"]
