"""Merged stacks (`sinks.quality.stacking`): a tagged value in the merged set or pattern is judged
exactly as the value by its own check, with the very pandas operations GX's pandas engine runs
(`Series.isin` for a set, `Series.astype(str).str.contains` for a pattern)."""

from __future__ import annotations

import datetime as dt
import enum
import re
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks.quality.stacking import (
    IN_SET,
    REGEX,
    Stack,
    distinct_stacks,
    mergeable,
    simple_body,
    stacks,
    tagged,
)


class Size(str, enum.Enum):  # noqa: UP042 -- deliberately: its str() is "Size.LARGE", not its value
    LARGE = "large"
    DIGITS = "0123456789"


MERGEABLE = [stack for stack in distinct_stacks() if mergeable(stack)]
PATTERNS = [stack.check.arguments["regex"] for stack in MERGEABLE if stack.check.expectation == REGEX]
SET_VALUES = sorted(
    {v for s in MERGEABLE if s.check.expectation == IN_SET for v in s.check.arguments["value_set"]}
)

values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(SET_VALUES),
    st.one_of(*(st.from_regex(pattern, fullmatch=True) for pattern in PATTERNS)),
    st.from_regex(r"\A[0-9]{10}\n\Z"),  # `$` also matches before a final newline: in both, or in neither
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.decimals(allow_nan=False, places=2, max_value=10**14),
    st.just(dt.date(2024, 1, 2)),
    st.sampled_from([b"0123456789", b"77", b"abc", Size.LARGE, Size.DIGITS, np.str_("77"), np.int64(77)]),
    st.sampled_from([pd.NA, pd.NaT, np.nan, Decimal("NaN"), float("inf")]),
)


def _judged(stack_check: Any, series: pd.Series) -> list[bool | None]:
    """What GX's pandas engine decides per value: None for a null (filtered out, never judged)."""
    nulls = series.isna()
    kept = series[~nulls]
    if stack_check.expectation == IN_SET:
        verdict = kept.isin(stack_check.arguments["value_set"])
    else:
        verdict = kept.astype(str).str.contains(stack_check.arguments["regex"])
    out: list[bool | None] = [None] * len(series)
    for position, ok in zip(kept.index, verdict, strict=True):
        out[position] = bool(ok)
    return out


def _merged_of(stack: Stack) -> Stack:
    [found] = [m for m in stacks() if m.tags and stack.members[0] in m.members]
    return found


def test_the_set_and_pattern_checks_merge_into_two_expectations() -> None:
    assert {s.check.expectation for s in MERGEABLE} == {IN_SET, REGEX}
    assert len(stacks()) == len(distinct_stacks()) - len(MERGEABLE) + 2 == 6
    for stack in MERGEABLE:  # every member keeps its own check and gets its distinct check's tag
        merged_stack = _merged_of(stack)
        tags = dict(zip(merged_stack.members, merged_stack.tags, strict=True))
        assert all(tags[member] == stack.name for member in stack.members)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, min_size=1, max_size=8))
def test_a_tagged_value_is_judged_as_the_value_by_its_own_check(batch: list[Any]) -> None:
    for stack in MERGEABLE:
        alone = _judged(stack.check, pd.Series(batch, dtype=object))
        as_merged = _judged(
            _merged_of(stack).check,
            pd.Series(tagged(stack.name, batch, stack.check.expectation == IN_SET), dtype=object),
        )
        assert as_merged == alone, (stack.check, batch)


def test_a_tag_cannot_be_forged_by_a_value() -> None:
    uuid_stack = next(
        s
        for s in MERGEABLE
        if s.check.expectation == REGEX and "[0-9a-fA-F]{8}" in s.check.arguments["regex"]
    )
    region = next(s for s in MERGEABLE if s.check.arguments.get("regex") == r"^(?:0[1-9]|[1-9][0-9])$")
    forged = f"{region.name}\x1f77"  # a value that looks like a valid tagged region code
    assert _judged(uuid_stack.check, pd.Series([forged], dtype=object)) == [False]
    as_merged = _judged(
        _merged_of(uuid_stack).check, pd.Series(tagged(uuid_stack.name, [forged], False), dtype=object)
    )
    assert as_merged == [False]
    assert re.fullmatch(
        _merged_of(region).check.arguments["regex"][:-1], tagged(region.name, ["77"], False)[0]
    )


@pytest.mark.parametrize(
    "pattern",
    [
        r"^a|b$",  # the anchors would not bind both branches
        r"^a$|^b$",
        r"^(?<=)x$",  # a lookbehind would see the tag
        r"^(?<!\x1f)x$",
        r"^(a)\1$",  # back-reference: groups are renumbered
        r"^(?P<n>a)$",
        r"^(?(1)a|b)$",
        r"^(?i)a$",
        r"^a\$",  # not anchored at the end
        r"a$",
        r"^[a$",  # unbalanced
    ],
)
def test_a_pattern_whose_meaning_the_merge_would_change_is_kept_apart(pattern: str) -> None:
    assert not simple_body(pattern)


def test_the_contract_patterns_and_simple_groups_merge() -> None:
    assert PATTERNS and all(simple_body(p) for p in PATTERNS)
    assert simple_body(r"^(?:a|b)[|^$\]](?=c)(?!d)[]x]c$")
