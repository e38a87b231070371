"""The operator's view of the pipeline as plain data, and the verdict over it (no I/O here).

`StatusSnapshot` is what `mic-pipeline status` measured; `evaluate(snapshot, thresholds)` turns it
into OK / DEGRADED / FAILING with one human reason per breached rule:

| rule | verdict |
|---|---|
| broker unreachable | FAILING |
| warehouse database unreachable (a missing SQLite file or table is not: nothing landed) | FAILING |
| a group's oldest unprocessed record older than `failing_lag_seconds` | FAILING |
| a group's lag over `max_lag_records` records, or over `max_lag_seconds` seconds | DEGRADED |
| a group asked for by name has no committed offset on the pipeline's topics | DEGRADED |
| a contract or pipeline topic does not exist on the broker | DEGRADED |
| dead letters in the last hour over `max_dead_letters_per_hour` (when set) | DEGRADED |
| a family's newest landed event older than `max_freshness_seconds` (when set) | DEGRADED |
| any quarantined batch or failed quality check | DEGRADED |
| a component not ready (`/health/ready` 503) for longer than `failing_not_ready_seconds` | FAILING |
| a component not ready for less long; its health endpoint unreachable or answering oddly | DEGRADED |

A component's readiness (`mic_pipeline.health`) says whether it makes progress: a sink that cannot
write (database down, disk full, a write error), a worker whose partitions lag while its commits do
not move. Not ready for a moment is normal (a database restart, a rebalance, a child being restarted
by `run`): DEGRADED, with the component's reasons. Not ready for longer than every self-healing the
pipeline does (retries with backoff up to 30 s, a rebalance's session timeout, `run`'s restart
backoff up to 30 s), 5 minutes by default, means someone must act: FAILING. An unreachable health
endpoint is DEGRADED only: `status` cannot tell for how long it has been down, and a component that
stays down stops committing, which the lag rules judge.

Exit codes of the verdicts: OK 0, DEGRADED 1, FAILING 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from mic_pipeline.config import ConfigError


class Verdict(StrEnum):
    """Overall health, ordered by severity."""

    OK = "OK"
    DEGRADED = "DEGRADED"
    FAILING = "FAILING"

    @property
    def exit_code(self) -> int:
        """0 for OK, 1 for DEGRADED, 2 for FAILING."""
        return _EXIT_CODES[self]


_EXIT_CODES = {Verdict.OK: 0, Verdict.DEGRADED: 1, Verdict.FAILING: 2}


@dataclass(frozen=True)
class PartitionLag:
    """One partition of a topic as seen by one consumer group.

    `committed` is None when the group never committed this partition (its lag then counts from the
    partition's first retained record). `lag_seconds` is the age of the record at the committed
    offset (the oldest unprocessed one) by its Kafka timestamp, 0 when nothing is unprocessed.
    """

    topic: str
    partition: int
    committed: int | None
    end: int
    lag_records: int
    lag_seconds: float


@dataclass(frozen=True)
class GroupStatus:
    """A consumer group's position on the pipeline's topics."""

    group: str
    partitions: tuple[PartitionLag, ...]

    @property
    def lag_records(self) -> int:
        """Unprocessed records over all partitions."""
        return sum(p.lag_records for p in self.partitions)

    @property
    def lag_seconds(self) -> float:
        """Age of the oldest unprocessed record over all partitions (0 when caught up)."""
        return max((p.lag_seconds for p in self.partitions), default=0.0)


@dataclass(frozen=True)
class TopicThroughput:
    """Records appended to a topic during the last `window_seconds`."""

    topic: str
    records: int
    window_seconds: float

    @property
    def per_second(self) -> float:
        """Mean append rate over the window."""
        return self.records / self.window_seconds if self.window_seconds > 0 else 0.0


@dataclass(frozen=True)
class FamilyFreshness:
    """The newest `occurred_at` landed in a family's warehouse event table (None: nothing landed)."""

    family: str
    table: str
    newest_occurred_at: datetime | None
    age_seconds: float | None


@dataclass(frozen=True)
class QualityGateStatus:
    """Quality-gate failures recorded by the sinks (`available` False: no such records exist yet)."""

    available: bool
    failures: int = 0
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComponentHealth:
    """What one component's readiness endpoint answered.

    `error` is set when the endpoint did not answer a readiness document (unreachable, another HTTP
    status than 200/503); else `ready` and, when not ready, its `reasons` and `since` (epoch
    seconds of the last change of readiness, the component's clock)."""

    name: str
    url: str
    ready: bool
    reasons: tuple[str, ...] = ()
    since: float | None = None
    last_progress: float | None = None
    error: str | None = None

    def not_ready_for(self, now: float) -> float | None:
        """Seconds the component has been not ready at `now` (None when ready or unknown)."""
        if self.ready or self.error is not None or self.since is None:
            return None
        return max(0.0, now - self.since)

    def describe(self, now: float, limit: float | None = None) -> str:
        """One line: `sink-parquet: not ready for 42 s: disk full: ...` (with `(> limit s)` after
        the duration when given)."""
        if self.error is not None:
            return f"{self.name}: {self.error}"
        if self.ready:
            return f"{self.name}: ready"
        duration = self.not_ready_for(now)
        for_how_long = "" if duration is None else f" for {duration:.0f} s"
        if limit is not None:
            for_how_long += f" (> {limit:g} s)"
        reasons = "; ".join(self.reasons) or "no reason given"
        return f"{self.name}: not ready{for_how_long}: {reasons}"


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything `status` measured at `taken_at`. Errors are strings, never exceptions."""

    taken_at: datetime
    broker_error: str | None = None
    groups: tuple[GroupStatus, ...] = ()
    missing_groups: tuple[str, ...] = ()
    missing_topics: tuple[str, ...] = ()
    throughput: tuple[TopicThroughput, ...] = ()
    dead_letters_last_hour: Mapping[str, int] = field(default_factory=dict)
    warehouse_error: str | None = None
    freshness: tuple[FamilyFreshness, ...] = ()
    quality: QualityGateStatus = field(default_factory=lambda: QualityGateStatus(available=False))
    components: tuple[ComponentHealth, ...] = ()


@dataclass(frozen=True)
class Thresholds:
    """Limits of the verdict; None disables a rule. Environment names in `ENV_VARIABLES`."""

    max_lag_records: int | None = 1000
    max_lag_seconds: float | None = 60.0
    failing_lag_seconds: float | None = 900.0
    max_freshness_seconds: float | None = None
    max_dead_letters_per_hour: int | None = None
    failing_not_ready_seconds: float | None = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Thresholds:
        """Defaults overridden by `MIC_STATUS_*` variables; an empty or `off` value disables a rule.
        A value that is neither raises `ConfigError`."""
        env = os.environ if environ is None else environ
        defaults = cls()
        values: dict[str, Any] = {}
        for name, variable in ENV_VARIABLES.items():
            default = getattr(defaults, name)
            text = env.get(variable)
            try:
                values[name] = default if text is None else parse_limit_value(text, integer=name in _INTS)
            except ValueError as error:
                raise ConfigError(variable, "" if text is None else text, str(error)) from None
        return cls(**values)


ENV_VARIABLES: dict[str, str] = {
    "max_lag_records": "MIC_STATUS_MAX_LAG_RECORDS",
    "max_lag_seconds": "MIC_STATUS_MAX_LAG_SECONDS",
    "failing_lag_seconds": "MIC_STATUS_FAILING_LAG_SECONDS",
    "max_freshness_seconds": "MIC_STATUS_MAX_FRESHNESS_SECONDS",
    "max_dead_letters_per_hour": "MIC_STATUS_MAX_DEAD_LETTERS_PER_HOUR",
    "failing_not_ready_seconds": "MIC_STATUS_FAILING_NOT_READY_SECONDS",
}
_INTS = frozenset({"max_lag_records", "max_dead_letters_per_hour"})


def parse_threshold(name: str, text: str, label: str) -> Any:
    """The value of threshold `name` (a `Thresholds` field) from text; `label` names it in errors."""
    return parse_limit(text, label, integer=name in _INTS)


def parse_limit(text: str, name: str, *, integer: bool) -> Any:
    """A limit from text: a non-negative number, or None for `""`/`off`/`none`; `ValueError` naming
    `name` otherwise."""
    try:
        return parse_limit_value(text, integer=integer)
    except ValueError as error:
        raise ValueError(f"{name} {error}, got {text!r}") from None


def parse_limit_value(text: str, *, integer: bool) -> Any:
    """`parse_limit` without the name: the `ValueError` says only what is wrong."""
    cleaned = text.strip().lower()
    if cleaned in ("", "off", "none"):
        return None
    try:
        value = int(cleaned) if integer else float(cleaned)
    except ValueError:
        raise ValueError(f"must be {'an integer' if integer else 'a number'} or 'off'") from None
    if value < 0 or value != value or value == float("inf"):
        raise ValueError("must be >= 0 and finite")
    return value


@dataclass(frozen=True)
class Assessment:
    """The verdict and why."""

    verdict: Verdict
    reasons: tuple[str, ...]


def evaluate(snapshot: StatusSnapshot, thresholds: Thresholds) -> Assessment:
    """Apply the rules of the module docstring; reasons are listed most severe first."""
    failing: list[str] = []
    degraded: list[str] = []
    if snapshot.broker_error is not None:
        failing.append(f"Kafka broker unreachable: {snapshot.broker_error}")
    if snapshot.warehouse_error is not None:
        failing.append(f"warehouse database unreachable: {snapshot.warehouse_error}")
    for group in snapshot.groups:
        lag_s = group.lag_seconds
        if thresholds.failing_lag_seconds is not None and lag_s > thresholds.failing_lag_seconds:
            failing.append(
                f"group {group.group}: oldest unprocessed record is {lag_s:.0f} s old "
                f"(> {thresholds.failing_lag_seconds:g} s)"
            )
        elif thresholds.max_lag_seconds is not None and lag_s > thresholds.max_lag_seconds:
            degraded.append(
                f"group {group.group}: oldest unprocessed record is {lag_s:.0f} s old "
                f"(> {thresholds.max_lag_seconds:g} s)"
            )
        if thresholds.max_lag_records is not None and group.lag_records > thresholds.max_lag_records:
            degraded.append(
                f"group {group.group}: lag {group.lag_records} records (> {thresholds.max_lag_records})"
            )
    degraded.extend(
        f"group {name}: no committed offsets on the pipeline's topics" for name in snapshot.missing_groups
    )
    if snapshot.missing_topics:
        degraded.append(f"topics missing on the broker: {', '.join(snapshot.missing_topics)}")
    dead = sum(snapshot.dead_letters_last_hour.values())
    if thresholds.max_dead_letters_per_hour is not None and dead > thresholds.max_dead_letters_per_hour:
        degraded.append(f"{dead} dead letters in the last hour (> {thresholds.max_dead_letters_per_hour})")
    if thresholds.max_freshness_seconds is not None:
        for fresh in snapshot.freshness:
            if fresh.age_seconds is not None and fresh.age_seconds > thresholds.max_freshness_seconds:
                degraded.append(
                    f"{fresh.table}: newest event is {fresh.age_seconds:.0f} s old "
                    f"(> {thresholds.max_freshness_seconds:g} s)"
                )
    if snapshot.quality.failures > 0:
        degraded.append(f"quality gate: {snapshot.quality.failures} failed or quarantined batches")
    _judge_components(snapshot, thresholds, failing, degraded)
    if failing:
        return Assessment(Verdict.FAILING, tuple(failing + degraded))
    if degraded:
        return Assessment(Verdict.DEGRADED, tuple(degraded))
    return Assessment(Verdict.OK, ())


def _judge_components(
    snapshot: StatusSnapshot, thresholds: Thresholds, failing: list[str], degraded: list[str]
) -> None:
    """The component rules of the module docstring, appended to `failing` / `degraded`."""
    now = snapshot.taken_at.timestamp()
    limit = thresholds.failing_not_ready_seconds
    for component in snapshot.components:
        if component.ready and component.error is None:
            continue
        duration = component.not_ready_for(now)
        if limit is not None and duration is not None and duration > limit:
            failing.append(component.describe(now, limit))
        else:
            degraded.append(component.describe(now))


def snapshot_to_json(
    snapshot: StatusSnapshot, assessment: Assessment, thresholds: Thresholds
) -> dict[str, Any]:
    """The `status --json` document: the snapshot, per-group totals, the thresholds and the verdict."""
    document: dict[str, Any] = {
        "verdict": assessment.verdict.value,
        "reasons": list(assessment.reasons),
        "taken_at": snapshot.taken_at.isoformat(),
        "broker_error": snapshot.broker_error,
        "groups": [
            {
                "group": g.group,
                "lag_records": g.lag_records,
                "lag_seconds": round(g.lag_seconds, 3),
                "partitions": [asdict(p) | {"lag_seconds": round(p.lag_seconds, 3)} for p in g.partitions],
            }
            for g in snapshot.groups
        ],
        "missing_groups": list(snapshot.missing_groups),
        "missing_topics": list(snapshot.missing_topics),
        "throughput": [
            {
                "topic": t.topic,
                "records": t.records,
                "window_seconds": t.window_seconds,
                "per_second": round(t.per_second, 3),
            }
            for t in snapshot.throughput
        ],
        "dead_letters_last_hour": dict(sorted(snapshot.dead_letters_last_hour.items())),
        "warehouse_error": snapshot.warehouse_error,
        "freshness": [
            {
                "family": f.family,
                "table": f.table,
                "newest_occurred_at": None
                if f.newest_occurred_at is None
                else f.newest_occurred_at.isoformat(),
                "age_seconds": None if f.age_seconds is None else round(f.age_seconds, 3),
            }
            for f in snapshot.freshness
        ],
        "quality": asdict(snapshot.quality) | {"details": list(snapshot.quality.details)},
        "components": [
            {
                "component": c.name,
                "url": c.url,
                "status": "unknown" if c.error is not None else "ready" if c.ready else "not ready",
                "reasons": list(c.reasons),
                "since": c.since,
                "last_progress": c.last_progress,
                "not_ready_seconds": _rounded(c.not_ready_for(snapshot.taken_at.timestamp())),
                "error": c.error,
            }
            for c in snapshot.components
        ],
        "thresholds": asdict(thresholds),
    }
    return document


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
