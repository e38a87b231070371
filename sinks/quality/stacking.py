"""Stacked validation frames: one GX expectation per distinct check, whatever the columns and tables.

Great Expectations costs about the same per expectation and call whatever the number of rows (its
metric graph, configuration copies and result objects dominate). The row suites of the four tables
hold ~90 expectations, but only ~30 distinct ones: the same regex, set or range applied to several
columns (`company_id` and every counterparty INN; the profile enums and their `manufacturer_`,
`buyer_`, `debtor_` copies; every free-text field; every money column...). So the gate validates one
*stacked* frame per call: one column per distinct check (its `Stack`), holding the values of every
(table, column) it applies to, one segment after the other, padded with nulls (which no column-map
expectation judges). A failing position maps back to its segment: the table, the column, the row and
the original `Check` with its contract rule. The verdict on a row is still a function of the row
alone: every expectation is a column-map expectation over single values.

Measured (CPU per call, the four tables' rows of one checkpoint): 28 stacked expectations cost less
than the 92 per-table ones, and less than 38 stacks that keep one column per table each (shorter
columns, more expectations): GX filters the whole frame once per expectation, so both the number
of expectations and the frame's size count.

Pure (no Great Expectations import): `sinks.quality.gate` runs the stacks.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from schemas.topics import Family
from schemas.warehouse import columns
from sinks.quality.suites import Check, row_checks
from sinks.rows import Row, column_lists

TIME_KINDS = ("date", "timestamp")


@dataclass(frozen=True, eq=False)
class Stack:
    """One distinct check, validated once over every column it applies to."""

    name: str
    check: Check
    """The expectation run on the stacked column (its `column` is `name`)."""
    members: tuple[tuple[Family, Check], ...]
    """The (table, original check) pairs whose columns are stacked, in order."""
    kind: str


def _key(check: Check) -> tuple[str, str]:
    return check.expectation, repr(sorted(check.arguments.items()))


@cache
def stacks() -> tuple[Stack, ...]:
    """Every distinct check of the four row suites, with the columns it applies to."""
    kinds = {(family, c.name): c.kind for family in Family for c in columns(family)}
    grouped: dict[tuple[str, str, str], list[tuple[Family, Check]]] = {}
    for family in Family:
        for check in row_checks(family):
            column_kind: str = kinds[(family, check.column)]
            time_kind = column_kind if column_kind in TIME_KINDS else "value"
            grouped.setdefault((*_key(check), time_kind), []).append((family, check))
    result = []
    for index, ((expectation, _, stack_kind), members) in enumerate(grouped.items()):
        name = f"s{index:02d}"
        first = members[0][1]
        result.append(
            Stack(name, Check(expectation, name, first.arguments, first.rule), tuple(members), stack_kind)
        )
    return tuple(result)


def _money_text(value: Any) -> str | None:
    if value is None:
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _midnight(value: Any) -> dt.datetime | None:
    return None if value is None else dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Segment:
    """Where the values of one (table, column) sit in a stacked column."""

    start: int
    family: Family
    check: Check


@dataclass(frozen=True)
class StackedFrame:
    """The stacked columns of one call (as plain lists) and how to map positions back."""

    data: dict[str, list[Any]]
    segments: dict[str, list[Segment]]
    used: tuple[Stack, ...]

    def locate(self, stack: Stack, position: int) -> Segment | None:
        """The segment holding `position` of `stack`'s column (None: padding)."""
        segments = self.segments[stack.name]
        starts = [segment.start for segment in segments]
        index = bisect.bisect_right(starts, position) - 1
        return segments[index] if index >= 0 else None


def stacked(rows_by_family: Mapping[Family, Sequence[Row]]) -> StackedFrame:
    """The stacked columns of the rows of each family (only the stacks these families use)."""
    values_of: dict[tuple[Family, str], Sequence[Any]] = {}
    money = {(f, c.name) for f in Family for c in columns(f) if c.kind == "money"}
    for family, rows in rows_by_family.items():
        names = [c.name for c in columns(family)]
        for name, values in zip(names, column_lists(names, rows), strict=True):
            values_of[(family, name)] = (
                [_money_text(v) for v in values] if (family, name) in money else values
            )
    data: dict[str, list[Any]] = {}
    segments: dict[str, list[Segment]] = {}
    used = []
    for stack in stacks():
        members = [(family, check) for family, check in stack.members if family in rows_by_family]
        if not members:
            continue
        used.append(stack)
        column: list[Any] = []
        segments[stack.name] = []
        for family, check in members:
            segments[stack.name].append(Segment(len(column), family, check))
            if stack.kind == "date":
                column.extend(_midnight(v) for v in values_of[(family, check.column)])
            else:
                column.extend(values_of[(family, check.column)])
        data[stack.name] = column
    length = max((len(column) for column in data.values()), default=0)
    for column in data.values():
        column.extend([None] * (length - len(column)))
    return StackedFrame(data, segments, tuple(used))
