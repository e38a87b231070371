"""Reconciliation of a simulated run: what the ground truth says was produced against what landed.

Pure functions over counts (the I/O that measures them is in `mic_pipeline.ops.warehouse_counts`).
A run reconciles when, for every family, the distinct `event_id`s landed plus those quarantined by
the quality gate equal the valid events produced, in SQL and in Parquet alike; the dead letters in
SQL equal, reason by reason, the invalid records produced; the duplicates the stream dropped equal
the re-sent records; no whole batch sits in the legacy batch quarantine; and so
produced = landed + dead letters + duplicates + quarantined.
A quarantined row is accounted for (held, listed by `mic-pipeline quarantine list`, releasable), so
it does not break reconciliation; `status` reports it as degraded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from producers.ground_truth import DUPLICATE, VALID, GroundTruthRecord
from schemas.topics import Family


@dataclass(frozen=True)
class Expected:
    """What a run produced, from its ground truth."""

    produced: int
    valid_by_family: Mapping[str, int]
    dead_letters_by_reason: Mapping[str, int]
    duplicates: int

    @property
    def valid(self) -> int:
        return sum(self.valid_by_family.values())

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_letters_by_reason.values())


def expected_from(records: Iterable[GroundTruthRecord]) -> Expected:
    """Count a ground truth: valid records per family (of their `event_type`), dead letters per
    expected reason, duplicates."""
    produced = duplicates = 0
    valid: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    for record in records:
        produced += 1
        if record.expected == VALID:
            valid[(record.event_type or "").partition(".")[0]] += 1
        elif record.expected == DUPLICATE:
            duplicates += 1
        else:
            dead[record.expected] += 1
    return Expected(produced, dict(valid), dict(dead), duplicates)


@dataclass(frozen=True)
class Landed:
    """What the pipeline made of it: distinct event ids per family in SQL and in Parquet, dead letters
    per reason in SQL, duplicates the stream dropped (None: the stream could not be asked), distinct
    event ids quarantined per family in SQL and in Parquet, and whole batches in the legacy batch
    quarantine (before per-row quarantine)."""

    sql_by_family: Mapping[str, int]
    parquet_by_family: Mapping[str, int]
    dead_letters_by_reason: Mapping[str, int]
    duplicates_dropped: int | None
    quarantined_batches: int = 0
    sql_quarantined_by_family: Mapping[str, int] = field(default_factory=dict)
    parquet_quarantined_by_family: Mapping[str, int] = field(default_factory=dict)

    @property
    def landed(self) -> int:
        return sum(self.sql_by_family.values())

    @property
    def quarantined(self) -> int:
        """Events quarantined in SQL (the warehouse the equation counts landed rows in)."""
        return sum(self.sql_quarantined_by_family.values())

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_letters_by_reason.values())


@dataclass(frozen=True)
class Reconciliation:
    """The verdict: `ok`, and one line per discrepancy."""

    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


def reconcile(expected: Expected, landed: Landed) -> Reconciliation:
    """Compare `landed` with `expected` (see the module doc)."""
    problems: list[str] = []
    for family in Family:
        want = expected.valid_by_family.get(family.value, 0)
        sql = landed.sql_by_family.get(family.value, 0)
        parquet = landed.parquet_by_family.get(family.value, 0)
        sql_held = landed.sql_quarantined_by_family.get(family.value, 0)
        parquet_held = landed.parquet_quarantined_by_family.get(family.value, 0)
        if not want == sql + sql_held == parquet + parquet_held:
            held = ""
            if sql_held or parquet_held:
                held = f" (quarantined: {sql_held} SQL, {parquet_held} Parquet)"
            problems.append(
                f"{family.table}: {want} valid produced, {sql} in SQL, {parquet} in Parquet{held}"
            )
    for reason in sorted(set(expected.dead_letters_by_reason) | set(landed.dead_letters_by_reason)):
        want = expected.dead_letters_by_reason.get(reason, 0)
        got = landed.dead_letters_by_reason.get(reason, 0)
        if want != got:
            problems.append(f"dead letters {reason}: {want} expected, {got} landed")
    if landed.duplicates_dropped is None:
        problems.append("duplicates dropped: the stream's aggregates could not be read")
    elif landed.duplicates_dropped != expected.duplicates:
        problems.append(
            f"duplicates: {expected.duplicates} re-sent, {landed.duplicates_dropped} dropped by the stream"
        )
    if landed.quarantined_batches:
        problems.append(f"{landed.quarantined_batches} batches quarantined by the quality gate")
    accounted = landed.landed + landed.dead_letters + (landed.duplicates_dropped or 0) + landed.quarantined
    if accounted != expected.produced:
        held = f" + {landed.quarantined} quarantined" if landed.quarantined else ""
        problems.append(
            f"{expected.produced} produced but {accounted} accounted for "
            f"({landed.landed} landed + {landed.dead_letters} dead letters + "
            f"{landed.duplicates_dropped or 0} duplicates{held})"
        )
    return Reconciliation(tuple(problems))


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def format_summary(expected: Expected, landed: Landed, verdict: Reconciliation) -> list[str]:
    """The demo's summary table, one line each."""
    lines = [
        f"events produced (ground truth): {expected.produced:,} = {expected.valid:,} valid + "
        f"{expected.dead_letters:,} invalid + {expected.duplicates:,} re-sent duplicates",
        "",
        f"  {'landed (distinct event_id)':<28}{'SQL':>9}{'Parquet':>9}{'expected':>10}",
    ]
    for family in Family:
        lines.append(
            f"  {family.table:<28}{landed.sql_by_family.get(family.value, 0):>9,}"
            f"{landed.parquet_by_family.get(family.value, 0):>9,}"
            f"{expected.valid_by_family.get(family.value, 0):>10,}"
        )
    lines.append(
        f"  {'total':<28}{landed.landed:>9,}{sum(landed.parquet_by_family.values()):>9,}{expected.valid:>10,}"
    )
    lines += ["", f"  {'dead letters by reason':<28}{'landed':>9}{'expected':>19}"]
    for reason in sorted(set(expected.dead_letters_by_reason) | set(landed.dead_letters_by_reason)):
        lines.append(
            f"  {reason:<28}{landed.dead_letters_by_reason.get(reason, 0):>9,}"
            f"{expected.dead_letters_by_reason.get(reason, 0):>19,}"
        )
    lines.append(f"  {'total':<28}{landed.dead_letters:>9,}{expected.dead_letters:>19,}")
    lines += [
        "",
        f"  duplicates dropped by the stream: {_n(landed.duplicates_dropped)} "
        f"(re-sent: {expected.duplicates:,}); rows quarantined: {landed.quarantined:,} SQL, "
        f"{sum(landed.parquet_quarantined_by_family.values()):,} Parquet; "
        f"legacy batches quarantined: {landed.quarantined_batches}",
        "",
    ]
    equation = (
        f"{expected.produced:,} produced = {landed.landed:,} landed + {landed.dead_letters:,} dead letters"
        f" + {_n(landed.duplicates_dropped)} duplicates"
        + (f" + {landed.quarantined:,} quarantined" if landed.quarantined else "")
    )
    if verdict.ok:
        lines.append(f"RECONCILED: {equation}; dead letters match the ground truth's reasons")
    else:
        lines.append("NOT RECONCILED:")
        lines.extend(f"  - {problem}" for problem in verdict.problems)
    return lines
