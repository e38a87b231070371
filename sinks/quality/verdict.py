"""The quality gate's interface as the sinks see it (no Great Expectations import here).

The verdict is per row: a row either passes every expectation of its table or is quarantined alone
with the expectations it failed. Each expectation is row-local, so the verdict on a row is a
function of that row only: SQL and Parquet, which run the same gate on the same rows, always make
the same decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from schemas.topics import Family
from sinks.rows import Row

MAX_VALUE_CHARS = 200


@dataclass(frozen=True)
class Failure:
    """One expectation a row failed: which, on which column, the contract rule, the value seen."""

    expectation: str
    column: str
    rule: str
    value: str
    """`repr` of the value (non-printables escaped, at most `MAX_VALUE_CHARS` characters)."""

    def as_json(self) -> dict[str, str]:
        return {
            "expectation": self.expectation,
            "column": self.column,
            "rule": self.rule,
            "value": self.value,
        }

    @property
    def summary(self) -> str:
        return f"{self.expectation}({self.column}) = {self.value}"


def shown_value(value: object) -> str:
    """A value as its `repr` (which escapes every non-printable character, so control characters
    are never raw), cut to `MAX_VALUE_CHARS`."""
    text = repr(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


@dataclass(frozen=True)
class Verdict:
    """The outcome of validating the rows of one batch: the failures of each failing row position."""

    failed: Mapping[int, tuple[Failure, ...]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failed

    def failures_of(self, position: int) -> tuple[Failure, ...]:
        """What row `position` failed (empty: it passed)."""
        return self.failed.get(position, ())


class QualityGate(Protocol):
    """Validates rows of one family before they may land."""

    def check(self, family: Family, rows: Sequence[Row]) -> Verdict:
        """Validate `rows` (decoded, deduplicated); never raises for bad data."""
        ...
