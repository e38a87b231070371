"""The quality gate's interface as the sinks see it (no Great Expectations import here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.topics import Family
from sinks.rows import Row


@dataclass(frozen=True)
class Verdict:
    """The outcome of validating one batch: passed, or the expectations that failed."""

    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def reason(self) -> str:
        """The failures as one line for the quarantine record."""
        return "; ".join(self.failures)


class QualityGate(Protocol):
    """Validates a batch of rows of one family before it may land."""

    def check(self, family: Family, rows: Sequence[Row]) -> Verdict:
        """Validate `rows` (decoded, deduplicated); never raises for bad data."""
        ...
