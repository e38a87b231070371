"""Stacked validation frames: few GX expectations per call, whatever the columns and tables.

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

*Merged* stacks go further: the 13 distinct value sets become one `ExpectColumnValuesToBeInSet` and
the 11 distinct patterns one `ExpectColumnValuesToMatchRegex`, so a call runs 6 expectations instead
of 28. Each distinct check keeps a tag (its stack name, e.g. `s11`) and its values enter the merged
column as `"<tag>\\x1f<value>"`; the merged set is every tag with each of its values, the merged
pattern `^(?:<tag>\\x1f(?:<pattern>)|...)$` (only patterns whose body keeps its meaning behind a
literal prefix are merged, `simple_body`: anchored `^...$`, no top-level `|`, no inner anchor, no
lookbehind; so a tagged value matches exactly when the value matches its own pattern; the branches
start with distinct literal tags, so the match stays linear in the value's length). Only strings are
tagged in a set check: null stays null (no column-map expectation judges it) and a non-string is in
no merged set, as it was in none of the original sets of strings; in a pattern check a non-string is
turned into text by pandas, as GX's `astype(str)` does, then tagged. A failing position maps back to
the segment, the original check and the untagged value.

No Great Expectations import (pandas only): `sinks.quality.gate` runs the stacks.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

import pandas as pd

from schemas.topics import Family
from schemas.warehouse import columns
from sinks.quality.suites import Check, row_checks
from sinks.rows import Row, column_lists

TIME_KINDS = ("date", "timestamp")


@dataclass(frozen=True, eq=False)
class Stack:
    """One distinct check (or, merged, several), validated once over every column it applies to."""

    name: str
    check: Check
    """The expectation run on the stacked column (its `column` is `name`)."""
    members: tuple[tuple[Family, Check], ...]
    """The (table, original check) pairs whose columns are stacked, in order."""
    kind: str
    tags: tuple[str | None, ...] = ()
    """Per member, the tag its values get in a merged stack (empty: not merged)."""


def _key(check: Check) -> tuple[str, str]:
    return check.expectation, repr(sorted(check.arguments.items()))


@cache
def stacks() -> tuple[Stack, ...]:
    """The stacks of every call: the distinct checks, the set and the pattern checks merged."""
    return merged(distinct_stacks())


@cache
def distinct_stacks() -> tuple[Stack, ...]:
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


_TAG = "\x1f"
IN_SET, REGEX = "ExpectColumnValuesToBeInSet", "ExpectColumnValuesToMatchRegex"


def simple_body(pattern: str) -> bool:
    """True if `^<body>$` means `^(?:<body>)$` after a literal prefix: the body has no unescaped `|`
    outside groups (the anchors would not bind every branch), no `^` or `$` outside a character
    class, no lookbehind (it would see the prefix), no conditional, named group, flag group or
    back-reference (the groups are renumbered, names could clash); `(?:`, `(?=` and `(?!` are fine."""
    if not (pattern.startswith("^") and pattern.endswith("$")) or pattern.endswith("\\$"):
        return False
    body, depth, in_class, index = pattern[1:-1], 0, False, 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            if body[index + 1 : index + 2].isdigit():
                return False
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            index += 2 if body[index + 1 : index + 2] == "^" else 1
            index += 1 if body[index : index + 1] == "]" else 0  # a leading "]" is a member
            continue
        elif char == "(":
            if body.startswith("(?", index) and not body.startswith(("(?:", "(?=", "(?!"), index):
                return False  # lookbehind, named group, conditional, flags
            depth += 1
        elif char == ")":
            depth -= 1
        elif char in "^$" or (char == "|" and depth == 0):
            return False
        index += 1
    return depth == 0 and not in_class


def mergeable(stack: Stack) -> bool:
    """A set check of strings only, or a pattern with a `simple_body`."""
    if stack.kind != "value":
        return False
    if stack.check.expectation == IN_SET:
        values = stack.check.arguments.get("value_set")
        strings = all(isinstance(v, str) for v in values or [None])
        return set(stack.check.arguments) == {"value_set"} and strings
    if stack.check.expectation == REGEX:
        pattern = stack.check.arguments.get("regex")
        return set(stack.check.arguments) == {"regex"} and isinstance(pattern, str) and simple_body(pattern)
    return False


def merged(distinct: Sequence[Stack]) -> tuple[Stack, ...]:
    """The set checks merged into one stack, the pattern checks into another (see the module doc)."""
    kept = [stack for stack in distinct if not mergeable(stack)]
    result = []
    for expectation, name in ((IN_SET, "m_in_set"), (REGEX, "m_regex")):
        parts = [stack for stack in distinct if mergeable(stack) and stack.check.expectation == expectation]
        if not parts:
            continue
        if expectation == IN_SET:
            values = [f"{p.name}{_TAG}{v}" for p in parts for v in p.check.arguments["value_set"]]
            arguments: dict[str, Any] = {"value_set": sorted(values)}
        else:
            branches = "|".join(f"{p.name}{_TAG}(?:{p.check.arguments['regex'][1:-1]})" for p in parts)
            arguments = {"regex": f"^(?:{branches})$"}
        members = tuple(member for p in parts for member in p.members)
        tags = tuple(p.name for p in parts for _ in p.members)
        rule = "; ".join(dict.fromkeys(p.check.rule for p in parts))
        result.append(Stack(name, Check(expectation, name, arguments, rule), members, "value", tags))
    return (*kept, *result)


def tagged(tag: str, values: Sequence[Any], in_set: bool) -> list[Any]:
    """`values` as a merged stack holds them (see the module doc): a string `"<tag>\\x1f<value>"`;
    anything else is left as it is for a set check (null stays null, a non-string is in no merged
    set as it was in no set of strings) and, for a pattern check, is turned into text by pandas as
    GX's `astype(str)` does, then tagged, unless pandas takes it for null."""
    prefix = f"{tag}{_TAG}"
    out = [
        prefix + v if type(v) is str else prefix + str.__str__(v) if isinstance(v, str) else v for v in values
    ]
    if in_set:
        return out
    others = [index for index, v in enumerate(out) if v is not None and not isinstance(v, str)]
    if others:
        series = pd.Series([out[i] for i in others], dtype=object)
        for index, null, text in zip(others, series.isna(), series.astype(str), strict=True):
            if not null:
                out[index] = f"{tag}{_TAG}{text}"
    return out


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
        tags = dict(zip(stack.members, stack.tags, strict=True)) if stack.tags else {}
        for family, check in members:
            segments[stack.name].append(Segment(len(column), family, check))
            source = values_of[(family, check.column)]
            if stack.kind == "date":
                column.extend(_midnight(v) for v in source)
            elif (tag := tags.get((family, check))) is not None:
                column.extend(tagged(tag, source, stack.check.expectation == IN_SET))
            else:
                column.extend(source)
        data[stack.name] = column
    length = max((len(column) for column in data.values()), default=0)
    for column in data.values():
        column.extend([None] * (length - len(column)))
    return StackedFrame(data, segments, tuple(used))
