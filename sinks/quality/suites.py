"""The expectation suites of the warehouse tables, as plain data (no Great Expectations import).

`row_checks(family)` is what every row must satisfy before it lands. Every check is a *row* check
(its verdict on a row depends on that row alone, never on the rest of the batch) and every check
cites the contract rule it enforces (`Check.rule`, a section and field of `CONTRACT.md`), so a
quarantined row always means a real anomaly. What decoding already guarantees (the enriched
record's shape: every column present, types, non-null where the table requires it, money with
exactly two decimals) is not checked again: a check that cannot fail is a defect.

Bounds are the contract's, exactly: `occurred_at` in 2000-01-01T00:00:00Z..2099-12-31T23:59:59Z,
dates in 2000-01-01..2099-12-31, money 0..10^13 (checked on the canonical text, so no float ever
judges money), free text 1-500 characters (names 1-300), ids 1-64, no C0 control character except
TAB/LF/CR and no U+007F in any string. Patterns use `[0-9]`, never `\\d` (which also matches
non-ASCII digits), and are anchored single character classes: linear in the value's length.

`warehouse_checks` in `sinks.quality.check` adds the checks that only make sense over the whole
warehouse (referential checks, uniqueness across files).
"""

from __future__ import annotations

import datetime as dt
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from schemas import fields
from schemas.registry import all_specs
from schemas.topics import Family
from schemas.warehouse import PROFILE_FIELDS, columns

EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2099, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
FIRST_DAY = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LAST_DAY = dt.datetime(2099, 12, 31, tzinfo=dt.UTC)
"""Dates are validated as UTC midnights (the frame holds them as timestamps)."""

MONEY_TEXT = r"^(?:[0-9]{1,13}\.[0-9]{2}|10000000000000\.00)$"
POSITIVE_MONEY_TEXT = r"^(?:0\.(?:0[1-9]|[1-9][0-9])|[1-9][0-9]{0,12}\.[0-9]{2}|10000000000000\.00)$"
INN_TEXT = r"^[0-9]{10}(?:[0-9]{2})?$"
UUID_TEXT = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
REGION_TEXT = r"^(?:0[1-9]|[1-9][0-9])$"
SOURCE_TEXT = r"^[a-z0-9_.-]{1,64}$"
_PRINTABLE = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
"""One character that the contract allows in a string (not a banned control character)."""
COUNTERPARTIES = ("manufacturer_id", "buyer_id", "debtor_id")

STRINGS = "CONTRACT.md Envelope: no string field may contain U+0000-U+001F except TAB/LF/CR, nor U+007F"


def text_pattern(min_length: int, max_length: int | None) -> str:
    """`min..max` allowed characters (no banned control character), anchored."""
    upper = "" if max_length is None else str(max_length)
    return f"^{_PRINTABLE}{{{min_length},{upper}}}$"


@dataclass(frozen=True, eq=False)
class Check:
    """One row expectation: the GX class name, its column, its other arguments, and the contract
    rule it enforces (section and field of `CONTRACT.md`)."""

    expectation: str
    column: str
    arguments: dict[str, Any] = field(default_factory=dict)
    rule: str = ""

    @property
    def label(self) -> str:
        return f"{self.expectation}({self.column})"


def _values(literal: Any) -> list[str]:
    return sorted(typing.get_args(literal))


_ENUMS: dict[str, list[str]] = {
    "status": _values(fields.MemberStatus),
    "sector": _values(fields.Sector),
    "size": _values(fields.CompanySize),
    "state_corporation": _values(fields.StateCorporation),
    "industry": _values(fields.OrderIndustry),
    "offer": _values(fields.PatentOffer),
    "deal": _values(fields.PatentDeal),
}
_KINDS = {Family.MEMBER: _values(fields.MemberKind), Family.PATENT: _values(fields.PatentKind)}
_ENUM_RULES = {
    "status": "CONTRACT.md Membership: member.joined status",
    "sector": "CONTRACT.md Membership: member.joined sector",
    "size": "CONTRACT.md Membership: member.joined size",
    "state_corporation": "CONTRACT.md Membership: member.joined state_corporation",
    "region_code": "CONTRACT.md Membership: member.joined region_code (two digits, 01-99)",
    "industry": "CONTRACT.md OEM orders: order.placed industry",
    "offer": "CONTRACT.md Patent board: patent.listed offer",
    "deal": "CONTRACT.md Patent board: patent.deal_closed deal",
}
_KIND_RULES = {
    Family.MEMBER: "CONTRACT.md Membership: member.joined kind",
    Family.PATENT: "CONTRACT.md Patent board: patent.listed kind",
}
_ENTITY_IDS = {
    "order_id": "CONTRACT.md OEM orders: order_id (1-64)",
    "patent_id": "CONTRACT.md Patent board: patent_id (1-64)",
    "request_id": "CONTRACT.md Factoring: request_id (1-64)",
}
_TEXTS = {
    "name": (1, 300, "CONTRACT.md Membership: member.joined name (1-300)"),
    "title": (1, 500, "CONTRACT.md Envelope: free-text fields are 1-500 chars (title)"),
    "reason": (1, 500, "CONTRACT.md Envelope: free-text fields are 1-500 chars (reason, optional text)"),
    "trace_id": (0, 64, "CONTRACT.md Envelope: trace_id, optional, <= 64 chars"),
}
_POSITIVE_MONEY = {"invoice_amount_rub", "advance_rub"}
_MONEY_RULE = "CONTRACT.md Envelope: money fields >= 0, at most 2 decimals, at most 10^13"
_POSITIVE_RULE = "CONTRACT.md Factoring: {} > 0 (money: at most 2 decimals, at most 10^13)"
_INN_RULE = "CONTRACT.md Envelope: company_id is an INN, 10 or 12 digits (check digits: the stream)"


def event_types(family: Family) -> list[str]:
    """The contract's event types of `family`."""
    return sorted({spec.event_type for spec in all_specs() if spec.family is family})


def _profile_checks(family: Family) -> list[Check]:
    checks = []
    names = {c.name for c in columns(family)}
    prefixes = [""] + [c.removesuffix("id") for c in COUNTERPARTIES]
    for prefix in prefixes:
        for base in PROFILE_FIELDS:
            name = f"{prefix}{base}"
            if name not in names:
                continue
            rule = f"{_ENUM_RULES[base]}; CONTRACT.md Warehouse: enrichment columns"
            if base == "region_code":
                checks.append(Check("ExpectColumnValuesToMatchRegex", name, {"regex": REGION_TEXT}, rule))
            else:
                checks.append(Check("ExpectColumnValuesToBeInSet", name, {"value_set": _ENUMS[base]}, rule))
    for base in ("industry", "offer", "deal"):
        if base in names:
            checks.append(
                Check("ExpectColumnValuesToBeInSet", base, {"value_set": _ENUMS[base]}, _ENUM_RULES[base])
            )
    if family in _KINDS:
        checks.append(
            Check("ExpectColumnValuesToBeInSet", "kind", {"value_set": _KINDS[family]}, _KIND_RULES[family])
        )
    return checks


def _envelope_checks(family: Family) -> list[Check]:
    return [
        Check(
            "ExpectColumnValuesToMatchRegex",
            "event_id",
            {"regex": UUID_TEXT},
            "CONTRACT.md Envelope: event_id is a UUID in canonical 36-char form",
        ),
        Check(
            "ExpectColumnValuesToBeInSet",
            "event_type",
            {"value_set": event_types(family)},
            f"CONTRACT.md Families: event types of the {family.value} family's topic",
        ),
        Check(
            "ExpectColumnValuesToBeBetween",
            "schema_version",
            {"min_value": 1},
            "CONTRACT.md Envelope: schema_version >= 1",
        ),
        Check(
            "ExpectColumnValuesToBeBetween",
            "occurred_at",
            {"min_value": EARLIEST, "max_value": LATEST},
            "CONTRACT.md Envelope: occurred_at in UTC between 2000-01-01T00:00:00Z and "
            "2099-12-31T23:59:59Z inclusive",
        ),
        Check(
            "ExpectColumnValuesToMatchRegex",
            "source",
            {"regex": SOURCE_TEXT},
            "CONTRACT.md Envelope: source is 1-64 chars [a-z0-9_.-]",
        ),
        Check("ExpectColumnValuesToMatchRegex", "company_id", {"regex": INN_TEXT}, _INN_RULE),
    ]


def _value_check(family: Family, name: str, kind: str) -> Check | None:
    """The check of one payload column (None: the column has no contract rule beyond its type)."""
    if name in COUNTERPARTIES:
        return Check("ExpectColumnValuesToMatchRegex", name, {"regex": INN_TEXT}, f"{_INN_RULE} ({name})")
    if name in _ENTITY_IDS:
        return Check(
            "ExpectColumnValuesToMatchRegex", name, {"regex": text_pattern(1, 64)}, _ENTITY_IDS[name]
        )
    if name in _TEXTS:
        low, high, rule = _TEXTS[name]
        return Check(
            "ExpectColumnValuesToMatchRegex", name, {"regex": text_pattern(low, high)}, f"{rule}; {STRINGS}"
        )
    if kind == "money":
        if name in _POSITIVE_MONEY:
            return Check(
                "ExpectColumnValuesToMatchRegex",
                name,
                {"regex": POSITIVE_MONEY_TEXT},
                _POSITIVE_RULE.format(name),
            )
        return Check("ExpectColumnValuesToMatchRegex", name, {"regex": MONEY_TEXT}, f"{_MONEY_RULE} ({name})")
    if kind == "date":
        return Check(
            "ExpectColumnValuesToBeBetween",
            name,
            {"min_value": FIRST_DAY, "max_value": LAST_DAY},
            f"CONTRACT.md Envelope: dates are YYYY-MM-DD between 2000-01-01 and 2099-12-31 ({name})",
        )
    if kind == "string":
        return Check(
            "ExpectColumnValuesToMatchRegex", name, {"regex": text_pattern(0, None)}, f"{STRINGS} ({name})"
        )
    return None


@cache
def row_checks(family: Family) -> tuple[Check, ...]:
    """Expectations every row of `family` must meet before it lands (row-local, each with its rule)."""
    checks = _envelope_checks(family)
    envelope = {check.column for check in checks}
    for column in columns(family):
        if column.name in envelope or column.kind == "enum":
            continue
        check = _value_check(family, column.name, column.kind)
        if check is not None:
            checks.append(check)
    if family is Family.ORDER:
        checks.append(
            Check(
                "ExpectColumnValuesToBeBetween",
                "quantity",
                {"min_value": 1},
                "CONTRACT.md OEM orders: order.placed quantity (integer >= 1)",
            )
        )
    if family is Family.FACTORING:
        checks.append(
            Check(
                "ExpectColumnValuesToBeBetween",
                "fee_rate",
                {"min_value": 0, "max_value": 1, "strict_min": True, "strict_max": True},
                "CONTRACT.md Factoring: factoring.funded fee_rate (0 < r < 1)",
            )
        )
    return tuple(checks + _profile_checks(family))


def referential_columns(family: Family) -> tuple[str, ...]:
    """Columns of `family` whose values must be members (`companies.company_id`)."""
    if family is Family.MEMBER:
        return ()
    if family is Family.ORDER:
        return ("company_id", "manufacturer_id")
    return ("company_id",)
