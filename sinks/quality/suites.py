"""The expectation suites of the warehouse tables, as plain data (no Great Expectations import).

`batch_checks(family)` is what every batch must satisfy before it lands: ids present, unique and
well-formed, event types of the family, enums of the contract, money >= 0 with scale 2 (checked on the
canonical text, `^\\d+\\.\\d{2}$`, so no float ever judges money), dates and timestamps in range, INN
format. `warehouse_checks(family)` adds the referential checks, which only make sense over the whole
warehouse (a batch of orders may legitimately land before the batch with its member).
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
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
MONEY_TEXT = r"^\d{1,14}\.\d{2}$"
INN_TEXT = r"^\d{10}(?:\d{2})?$"
UUID_TEXT = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
REGION_TEXT = r"^(?:0[1-9]|[1-9][0-9])$"
COUNTERPARTIES = ("manufacturer_id", "buyer_id", "debtor_id")


@dataclass(frozen=True)
class Check:
    """One expectation: the GX class name, its column and its other arguments."""

    expectation: str
    column: str
    arguments: dict[str, Any] = field(default_factory=dict)

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


def event_types(family: Family) -> list[str]:
    """The contract's event types of `family`."""
    return sorted({spec.event_type for spec in all_specs() if spec.family is family})


def _enum_checks(family: Family) -> list[Check]:
    checks = []
    prefixes = [""] + [f"{c.removesuffix('id')}" for c in COUNTERPARTIES]
    names = {c.name for c in columns(family)}
    for prefix in prefixes:
        for base in PROFILE_FIELDS:
            name = f"{prefix}{base}"
            if name not in names:
                continue
            if base == "region_code":
                checks.append(Check("ExpectColumnValuesToMatchRegex", name, {"regex": REGION_TEXT}))
            else:
                checks.append(Check("ExpectColumnValuesToBeInSet", name, {"value_set": _ENUMS[base]}))
    for base in ("industry", "offer", "deal"):
        if base in names:
            checks.append(Check("ExpectColumnValuesToBeInSet", base, {"value_set": _ENUMS[base]}))
    if family in _KINDS:
        checks.append(Check("ExpectColumnValuesToBeInSet", "kind", {"value_set": _KINDS[family]}))
    return checks


@cache
def batch_checks(family: Family) -> tuple[Check, ...]:
    """Expectations every batch of `family` must meet."""
    checks = [
        Check("ExpectColumnValuesToBeUnique", "event_id"),
        Check("ExpectColumnValuesToMatchRegex", "event_id", {"regex": UUID_TEXT}),
        Check("ExpectColumnValuesToBeInSet", "event_type", {"value_set": event_types(family)}),
        Check("ExpectColumnValuesToBeBetween", "schema_version", {"min_value": 1}),
    ]
    for column in columns(family):
        if not column.nullable:
            checks.append(Check("ExpectColumnValuesToNotBeNull", column.name))
        if column.name == "company_id" or column.name in COUNTERPARTIES:
            checks.append(Check("ExpectColumnValuesToMatchRegex", column.name, {"regex": INN_TEXT}))
        elif column.kind == "money":
            checks.append(Check("ExpectColumnValuesToMatchRegex", column.name, {"regex": MONEY_TEXT}))
        elif column.kind in ("date", "timestamp"):
            checks.append(
                Check(
                    "ExpectColumnValuesToBeBetween", column.name, {"min_value": EARLIEST, "max_value": LATEST}
                )
            )
    if family is Family.ORDER:
        checks.append(Check("ExpectColumnValuesToBeBetween", "quantity", {"min_value": 1}))
    if family is Family.FACTORING:
        checks.append(
            Check(
                "ExpectColumnValuesToBeBetween",
                "fee_rate",
                {"min_value": 0, "max_value": 1, "strict_min": True, "strict_max": True},
            )
        )
    return tuple(checks + _enum_checks(family))


REFERENCED_COMPANY = "member_company_ids"
"""The name under which the warehouse check passes the known member ids to referential checks."""


def referential_columns(family: Family) -> tuple[str, ...]:
    """Columns of `family` whose values must be members (`companies.company_id`)."""
    if family is Family.MEMBER:
        return ()
    if family is Family.ORDER:
        return ("company_id", "manufacturer_id")
    return ("company_id",)
