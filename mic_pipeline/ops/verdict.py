"""The verdict over what `status` measured (no I/O here).

`StatusSnapshot` (`mic_pipeline.ops.verdict_types`) is what `mic-pipeline status` measured;
`evaluate(snapshot, thresholds)` turns it into OK / DEGRADED / FAILING with one human reason per
breached rule:

| rule | verdict |
|---|---|
| broker unreachable, or refusing the settings' access (login, TLS, ACL) | FAILING |
| warehouse database unreachable (a missing SQLite file or table is not: nothing landed) | FAILING |
| a group's commits stopped (`lag_rules`: `stopped`) or it is far behind (`failing_lag_seconds`) | FAILING |
| a group not committing, behind, or its lag growing (`lag_rules`) | DEGRADED |
| a group's lag over `max_lag_records` records or `max_lag_seconds` s (both off unless set) | DEGRADED |
| a group asked for by name (`--group`; `run` and `demo` name the pipeline's own) has no committed offset
  while the oldest record on its topics waited longer than its commit interval + margin | DEGRADED |
| a contract or pipeline topic does not exist on the broker | DEGRADED |
| dead letters in the last hour over `max_dead_letters_per_hour` (when set) | DEGRADED |
| stale: a family's records wait for a sink longer than `max_freshness_seconds` (120 s) | DEGRADED |
| any quarantined batch or failed quality check | DEGRADED |
| a component not ready (`/health/ready` 503) for longer than `failing_not_ready_seconds` | FAILING |
| a component not ready for less long; its health endpoint unreachable or answering oddly | DEGRADED |

Stale means: records are on their way to a sink -- input records the stream has not decided yet,
enriched records the sink has not committed yet -- and the oldest of them has waited more than
`max_freshness_seconds`. `status` shows it beside the age of the sink's newest row (`landed_at`). A
family that receives nothing is never stale, nor is one whose records were all dead-lettered,
dropped as duplicates or quarantined; a stopped stream or sink is, within the threshold.

The lag rules, their window and the commit intervals are `mic_pipeline.ops.lag_rules` (Burrow's
model, in seconds): a batching consumer is healthy while its offsets move and its oldest
unprocessed record stays within its own commit interval plus a margin; a record count is judged
only when `max_lag_records` is set.

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
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from mic_pipeline.config import ConfigError
from mic_pipeline.ops.lag_rules import (
    STATES_FAILING,
    GroupJudgement,
    LagLimits,
    describe,
    judge_group,
    judge_uncommitted,
)
from mic_pipeline.ops.verdict_types import (
    ComponentHealth,
    FamilyFreshness,
    GroupStatus,
    LagSample,
    PartitionLag,
    QualityGateStatus,
    StatusSnapshot,
    TopicThroughput,
)

__all__ = [
    "ComponentHealth",
    "FamilyFreshness",
    "GroupStatus",
    "LagSample",
    "PartitionLag",
    "QualityGateStatus",
    "StatusSnapshot",
    "TopicThroughput",
]


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
class Thresholds:
    """Limits of the verdict; None disables a rule. Environment names in `ENV_VARIABLES`;
    `commit_intervals` from `MIC_STATUS_COMMIT_INTERVALS` (`GROUP=S,...`)."""

    max_lag_records: int | None = None
    max_lag_seconds: float | None = None
    lag_margin_seconds: float = 60.0
    failing_lag_seconds: float | None = 900.0
    max_freshness_seconds: float | None = 120.0
    max_dead_letters_per_hour: int | None = None
    failing_not_ready_seconds: float | None = 300.0
    window_seconds: float | None = None
    """How long `status` samples the offsets (None: long enough for every group's stall rule, at
    least 5 s; 0: one sample, no window rules)."""
    commit_intervals: tuple[tuple[str, float], ...] = ()

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
            if values[name] is None and name in _REQUIRED:
                raise ConfigError(variable, text or "", "must be a number (this rule cannot be off)")
        intervals = env.get(COMMIT_INTERVALS_VARIABLE)
        if intervals is not None:
            try:
                values["commit_intervals"] = parse_commit_intervals(intervals.split(","))
            except ValueError as error:
                raise ConfigError(COMMIT_INTERVALS_VARIABLE, intervals, str(error)) from None
        return cls(**values)

    @property
    def intervals(self) -> dict[str, float]:
        return dict(self.commit_intervals)

    @property
    def lag_limits(self) -> LagLimits:
        return LagLimits(self.lag_margin_seconds, self.failing_lag_seconds, self.intervals)


ENV_VARIABLES: dict[str, str] = {
    "max_lag_records": "MIC_STATUS_MAX_LAG_RECORDS",
    "max_lag_seconds": "MIC_STATUS_MAX_LAG_SECONDS",
    "lag_margin_seconds": "MIC_STATUS_LAG_MARGIN_SECONDS",
    "failing_lag_seconds": "MIC_STATUS_FAILING_LAG_SECONDS",
    "max_freshness_seconds": "MIC_STATUS_MAX_FRESHNESS_SECONDS",
    "max_dead_letters_per_hour": "MIC_STATUS_MAX_DEAD_LETTERS_PER_HOUR",
    "failing_not_ready_seconds": "MIC_STATUS_FAILING_NOT_READY_SECONDS",
    "window_seconds": "MIC_STATUS_WINDOW_SECONDS",
}
COMMIT_INTERVALS_VARIABLE = "MIC_STATUS_COMMIT_INTERVALS"
_INTS = frozenset({"max_lag_records", "max_dead_letters_per_hour"})
_REQUIRED = frozenset({"lag_margin_seconds"})


def parse_commit_intervals(entries: list[str]) -> tuple[tuple[str, float], ...]:
    """`GROUP=S` entries (blank ones ignored) as pairs; `ValueError` saying which entry is wrong."""
    pairs = []
    for entry in entries:
        if not entry.strip():
            continue
        group, sep, seconds = entry.strip().rpartition("=")
        if not sep or not group:
            raise ValueError(f"{entry!r} is not GROUP=SECONDS")
        value = parse_limit_value(seconds, integer=False)
        if value is None or value <= 0:
            raise ValueError(f"{entry!r}: the interval must be a number > 0")
        pairs.append((group, float(value)))
    return tuple(pairs)


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
    """The verdict, why, and each group's lag judgement."""

    verdict: Verdict
    reasons: tuple[str, ...]
    groups: tuple[GroupJudgement, ...] = ()


def evaluate(snapshot: StatusSnapshot, thresholds: Thresholds) -> Assessment:
    """Apply the rules of the module docstring; reasons are listed most severe first."""
    failing: list[str] = []
    degraded: list[str] = []
    if snapshot.broker_error is not None:
        what = "Kafka refuses access" if snapshot.broker_refused else "Kafka broker unreachable"
        failing.append(f"{what}: {snapshot.broker_error}")
    if snapshot.warehouse_error is not None:
        failing.append(f"warehouse database unreachable: {snapshot.warehouse_error}")
    judgements = _judge_groups(snapshot, thresholds, failing, degraded)
    for name in snapshot.missing_groups:
        uncommitted = judge_uncommitted(name, snapshot.missing_waiting_s.get(name), thresholds.lag_limits)
        if uncommitted is not None:
            degraded.append(uncommitted[1])
    if snapshot.missing_topics:
        degraded.append(f"topics missing on the broker: {', '.join(snapshot.missing_topics)}")
    dead = sum(snapshot.dead_letters_last_hour.values())
    if thresholds.max_dead_letters_per_hour is not None and dead > thresholds.max_dead_letters_per_hour:
        degraded.append(f"{dead} dead letters in the last hour (> {thresholds.max_dead_letters_per_hour})")
    degraded.extend(_stale(snapshot.freshness, thresholds.max_freshness_seconds))
    if snapshot.quality.failures > 0:
        degraded.append(f"quality gate: {snapshot.quality.failures} failed or quarantined batches")
    _judge_components(snapshot, thresholds, failing, degraded)
    if failing:
        return Assessment(Verdict.FAILING, tuple(failing + degraded), judgements)
    if degraded:
        return Assessment(Verdict.DEGRADED, tuple(degraded), judgements)
    return Assessment(Verdict.OK, (), judgements)


def _judge_groups(
    snapshot: StatusSnapshot, thresholds: Thresholds, failing: list[str], degraded: list[str]
) -> tuple[GroupJudgement, ...]:
    """The lag rules (`mic_pipeline.ops.lag_rules`) and the opt-in count and age limits per group."""
    judgements = []
    limits = thresholds.lag_limits
    for group in snapshot.groups:
        judgement = judge_group(group, snapshot.taken_at, snapshot.history, limits)
        judgements.append(judgement)
        if judgement.state != "ok":
            line = describe(judgement, thresholds.lag_margin_seconds, thresholds.failing_lag_seconds)
            (failing if judgement.state in STATES_FAILING else degraded).append(line)
        lag_s = group.lag_seconds
        if thresholds.max_lag_seconds is not None and lag_s > thresholds.max_lag_seconds:
            degraded.append(
                f"group {group.group}: oldest unprocessed record is {lag_s:.0f} s old "
                f"(> {thresholds.max_lag_seconds:g} s)"
            )
        if thresholds.max_lag_records is not None and group.lag_records > thresholds.max_lag_records:
            degraded.append(
                f"group {group.group}: lag {group.lag_records} records (> {thresholds.max_lag_records})"
            )
    return tuple(judgements)


def _stale(freshness: tuple[FamilyFreshness, ...], limit: float | None) -> list[str]:
    """The freshness rule: inputs waiting longer than `limit` for a sink to land anything newer."""
    if limit is None:
        return []
    lines = []
    for fresh in freshness:
        waiting = fresh.waiting_seconds
        if waiting is None or waiting <= limit:
            continue
        landed = (
            "nothing landed yet"
            if fresh.age_seconds is None
            else f"newest row landed {fresh.age_seconds:.0f} s ago"
        )
        lines.append(
            f"{fresh.table} ({fresh.sink}): {landed} while {fresh.inputs_since} records are on their way, "
            f"the oldest waiting {waiting:.0f} s (> {limit:g} s)"
        )
    return lines


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
    judged = {j.group: j for j in assessment.groups}
    document: dict[str, Any] = {
        "verdict": assessment.verdict.value,
        "reasons": list(assessment.reasons),
        "taken_at": snapshot.taken_at.isoformat(),
        "broker_error": snapshot.broker_error,
        "broker_refused": snapshot.broker_refused,
        "groups": [
            {
                "group": g.group,
                "lag_records": g.lag_records,
                "lag_seconds": round(g.lag_seconds, 3),
                **_judgement_json(judged.get(g.group)),
                "partitions": [asdict(p) | {"lag_seconds": round(p.lag_seconds, 3)} for p in g.partitions],
            }
            for g in snapshot.groups
        ],
        "window": {
            "samples": len(snapshot.history) + 1,
            "span_seconds": round(
                snapshot.taken_at.timestamp() - min((s.at.timestamp() for s in snapshot.history),
                                                    default=snapshot.taken_at.timestamp()), 3
            ),
        },
        "missing_groups": list(snapshot.missing_groups),
        "missing_waiting_s": {name: round(age, 3) for name, age in snapshot.missing_waiting_s.items()},
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
                "sink": f.sink,
                "newest_landed_at": None if f.newest_landed_at is None else f.newest_landed_at.isoformat(),
                "age_seconds": _rounded(f.age_seconds),
                "inputs_since": f.inputs_since,
                "waiting_seconds": _rounded(f.waiting_seconds),
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
        "thresholds": asdict(thresholds) | {"commit_intervals": dict(thresholds.commit_intervals)},
    }
    return document


def _judgement_json(judgement: GroupJudgement | None) -> dict[str, Any]:
    if judgement is None:
        return {}
    return {
        "state": judgement.state,
        "commit_interval_s": judgement.interval_s,
        "lag_limit_s": judgement.limit_s,
    }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
