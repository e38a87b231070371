"""How a consumer group's lag is judged (pure): Burrow's model, in seconds, against the group's own
commit interval.

A consumer that batches (the sinks: a batch is due after `--max-batch-wait`, 2 s; the stream: a
checkpoint about every `MIC_STREAMS_COMMIT_S`, 1 s) always has some records behind its committed
offset, so a record count says nothing. What does: whether its committed offsets move, and how old
the oldest record it has not committed is. For each group, `interval` is its commit interval (known
defaults by group name, `COMMIT_INTERVALS`, or `Thresholds.commit_intervals`) and `limit` =
`interval + lag_margin_seconds`. The rules look at samples of the committed offsets over a window
(`LagSample`s, oldest first, then the current measurement), per partition:

| state | rule (per partition; a group takes its worst partition's state) | verdict |
|---|---|---|
| `ok` | no lag now, or none of the rules below (a slow batch whose oldest record is within `limit`) | OK |
| `stopped` | committed offset unchanged with lag at every sample for `interval + STALL_SLACK_S` s or more,
  and the oldest unprocessed record older than `interval + 2 x margin` | FAILING |
| `not committing` | the same, the oldest record older than `limit` (not yet the above) | DEGRADED |
| `far behind` | the oldest unprocessed record older than `failing_lag_seconds` | FAILING |
| `behind` | the oldest unprocessed record older than `limit` while commits move | DEGRADED |
| `growing` | lag at every sample, the smallest lag of the window's later half above the largest of its
  earlier half (at least `TREND_MIN_SAMPLES` samples spanning `TREND_MIN_INTERVALS` intervals), the
  oldest unprocessed record older than `interval + margin / 2` now (half way to `behind`), its age
  grown likewise wherever the samples measured it, and the committed offset moved over the window | DEGRADED |

A healthy batching consumer's lag is a saw-tooth: it grows for one interval and drops at each
commit. A batch can take longer than the interval (the quality gate's first run loads Great
Expectations: 3 s, over 30 s on an overloaded machine): the margin (60 s) absorbs it, so a consumer
is healthy while its oldest unprocessed record stays within `limit`, whether or not it committed
meanwhile. The commit rules need a window longer than the interval (it must have committed in it);
the `growing` rule compares halves of a window many intervals long, so the saw-tooth's peaks never
read as growth, while a consumer that falls behind (or stopped) grows past them. More records
waiting alone is not falling behind: when the traffic rises, or the stream releases the records it
held for a member, the lag in records climbs for a while at a healthy consumer whose oldest record
stays younger than one commit cycle (seen in the demo: 72 to 144 records over 17 s, oldest record
1-2 s old). So `growing` also needs the oldest record older than a commit cycle and its age rising:
a consumer that falls behind cannot commit up to recent records, and that age climbs with wall time.
As in Burrow, `growing` is about a consumer that commits and still falls behind: one that does not
commit at all is judged by the stall rules, with their margin (CI's demo: a Parquet sink busy for 17
s in one batch during the drain, 128 then 130 records waiting, read DEGRADED before this).
A third CI run caught the same drain with the age rising too (both quick demos, a machine loaded by
other runs: the Parquet sink from 84 to 119 records over 14 s, the oldest record 11 s old, commits
moving): a consumer catching up with a burst looks like that for as long as the burst lasts. So
`growing` warns only half way to `behind`: the oldest record older than `interval + margin / 2`
(32 s for a sink with the default margin) -- an early warning operators can act on, not a burst.
A stopped consumer therefore reads DEGRADED once its oldest record is older than `limit` and FAILING
once older than `interval + 2 x margin` (with the defaults: 62 s and 122 s after the last commit for a sink).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mic_pipeline.ops.verdict_types import GroupStatus, LagSample, PartitionLag
from schemas.topics import DEADLETTER_TOPIC, ENRICHED_TOPICS, INPUT_TOPICS

GROUP_TOPICS: dict[str, tuple[str, ...]] = {
    "mic-streams": INPUT_TOPICS,
    "mic-sink-sql": (*ENRICHED_TOPICS, DEADLETTER_TOPIC),
    "mic-sink-parquet": ENRICHED_TOPICS,
}
"""Logical topics the pipeline's own groups consume, by name suffix (a test keeps them equal to what
the stream and `sinks.app.sink_topics` subscribe to)."""
COMMIT_INTERVALS: dict[str, float] = {"mic-streams": 1.0, "mic-sink-sql": 2.0, "mic-sink-parquet": 2.0}
"""Commit interval of the pipeline's own groups by name suffix (after the topic prefix): the stream's
`MIC_STREAMS_COMMIT_S` default and the sinks' `--max-batch-wait` default (a test keeps them equal)."""
DEFAULT_COMMIT_INTERVAL_S = 5.0
"""Any other group (tell `status` yours with `--commit-interval GROUP=S`)."""
STALL_SLACK_S = 3.0
"""A consumer that commits every `interval` seconds commits within `interval + STALL_SLACK_S` (its
batch's write time); a window at least that long without a commit means it is not committing."""
TREND_MIN_SAMPLES = 4
TREND_MIN_INTERVALS = 4.0

STATES_FAILING = ("stopped", "far behind")
STATES_DEGRADED = ("not committing", "behind", "growing")


def group_topics(group: str) -> tuple[str, ...] | None:
    """The logical topics `group` consumes when it is one of the pipeline's own (by suffix), else None."""
    for suffix, topics in GROUP_TOPICS.items():
        if group.endswith(suffix):
            return topics
    return None


def judge_uncommitted(group: str, waiting_s: float | None, limits: LagLimits) -> tuple[str, str] | None:
    """A group that has committed nothing on the pipeline's topics (`status --group G`, or one of the
    pipeline's own that `run`/`demo` name): like a stopped consumer, it is fine while the oldest
    record on its topics (`waiting_s`; None: none there) is within its commit interval + margin,
    DEGRADED past that (never FAILING: a new group's first batch on an old backlog takes a moment).
    Returns (state, line) when not fine."""
    if waiting_s is None:
        return None
    limit = commit_interval(group, limits.overrides) + limits.margin_s
    if waiting_s <= limit:
        return None
    return "never committed", (
        f"group {group}: no committed offsets while its oldest record waited {waiting_s:.0f} s "
        f"(> {limit:g} s = commit interval + margin): not started, not subscribed, or stuck in its "
        "first batch"
    )


def commit_interval(group: str, overrides: Mapping[str, float]) -> float:
    """The commit interval of `group`: an override by exact name, else the known suffix, else 5 s."""
    if group in overrides:
        return overrides[group]
    for suffix, seconds in COMMIT_INTERVALS.items():
        if group.endswith(suffix):
            return seconds
    return DEFAULT_COMMIT_INTERVAL_S


@dataclass(frozen=True)
class LagLimits:
    """The limits `judge_group` applies (from `Thresholds`)."""

    margin_s: float
    failing_s: float | None
    overrides: Mapping[str, float]


@dataclass(frozen=True)
class PartitionJudgement:
    """One partition's state and the figures that decided it."""

    topic: str
    partition: int
    state: str
    lag_records: int
    oldest_s: float
    since_s: float = 0.0
    """For `stopped` / `not committing`: how long the committed offset has been seen unchanged."""
    committed: int | None = None
    grew_from: int = 0


@dataclass(frozen=True)
class GroupJudgement:
    """A group's state (its worst partition's), its interval and limit, and the partitions not ok."""

    group: str
    interval_s: float
    limit_s: float
    state: str
    partitions: tuple[PartitionJudgement, ...]
    window_s: float
    samples: int


_ORDER = ("ok", "growing", "behind", "not committing", "far behind", "stopped")


def judge_group(
    current: GroupStatus, now: datetime, history: Sequence[LagSample], limits: LagLimits
) -> GroupJudgement:
    """Apply the rules of the module docstring to one group (`history`: earlier samples, oldest first)."""
    interval = commit_interval(current.group, limits.overrides)
    limit = interval + limits.margin_s
    series: dict[tuple[str, int], list[tuple[float, PartitionLag]]] = {}
    for sample in history:
        for group in sample.groups:
            if group.group == current.group:
                for p in group.partitions:
                    series.setdefault((p.topic, p.partition), []).append((sample.at.timestamp(), p))
    at = now.timestamp()
    judged = []
    for p in current.partitions:
        earlier = [(t, s) for t, s in series.get((p.topic, p.partition), []) if t < at]
        judged.append(_judge_partition(p, at, earlier, interval, limits.margin_s, limits.failing_s))
    worst = max((j.state for j in judged), key=_ORDER.index, default="ok")
    span = at - min((s.at.timestamp() for s in history), default=at)
    return GroupJudgement(
        current.group,
        interval,
        limit,
        worst,
        tuple(j for j in judged if j.state != "ok"),
        round(span, 3),
        len(history) + 1,
    )


def _judge_partition(
    p: PartitionLag,
    at: float,
    earlier: list[tuple[float, PartitionLag]],
    interval: float,
    margin: float,
    failing_s: float | None,
) -> PartitionJudgement:
    limit = interval + margin

    def judged(state: str, **extra: object) -> PartitionJudgement:
        return PartitionJudgement(
            p.topic, p.partition, state, p.lag_records, p.lag_seconds, committed=p.committed,
            **extra,  # type: ignore[arg-type]
        )  # fmt: skip

    if p.lag_records == 0:
        return judged("ok")
    unchanged_since = _unchanged_since(p, at, earlier)
    stalled = unchanged_since is not None and at - unchanged_since >= interval + STALL_SLACK_S
    if stalled and p.lag_seconds > limit:
        assert unchanged_since is not None
        state = "stopped" if p.lag_seconds > limit + margin else "not committing"
        return judged(state, since_s=round(at - unchanged_since, 3))
    if failing_s is not None and p.lag_seconds > failing_s:
        return judged("far behind")
    if p.lag_seconds > limit and not stalled:
        return judged("behind")
    grew = _grew_from(p, at, earlier, interval, margin)
    if grew is not None:
        return judged("growing", grew_from=grew)
    return judged("ok")


def _unchanged_since(p: PartitionLag, at: float, earlier: list[tuple[float, PartitionLag]]) -> float | None:
    """The time of the earliest sample from which on the partition had lag at every sample and the same
    committed offset as now (None: not even the previous sample)."""
    since = None
    for t, sample in reversed(earlier):
        if sample.lag_records == 0 or sample.committed != p.committed:
            break
        since = t
    return since


def _grew_from(
    p: PartitionLag, at: float, earlier: list[tuple[float, PartitionLag]], interval: float, margin: float
) -> int | None:
    """The largest lag of the window's earlier half when the lag grew over the window (see the module
    docstring), else None."""
    lags = [s.lag_records for _, s in earlier] + [p.lag_records]
    if len(lags) < TREND_MIN_SAMPLES or at - earlier[0][0] < TREND_MIN_INTERVALS * interval:
        return None
    if min(lags) == 0 or p.lag_seconds <= interval + max(STALL_SLACK_S, margin / 2):
        return None
    if earlier[0][1].committed == p.committed:  # not committing: the stall rules judge it, with margin
        return None
    if not _rising(lags):
        return None
    ages = [s.lag_seconds for _, s in earlier] + [p.lag_seconds]
    if min(ages) > 0 and not _rising(ages):  # an age of 0 with records waiting: not measured
        return None
    return max(lags[: len(lags) // 2])


def _rising(values: Sequence[float]) -> bool:
    """The smallest value of the later half above the largest of the earlier half."""
    half = len(values) // 2
    return min(values[len(values) - half :]) > max(values[:half])


def describe(judgement: GroupJudgement, margin_s: float, failing_s: float | None = None) -> str:
    """One line for a group that is not ok: its state, its worst partition's figures, and the rule."""
    worst = max(judgement.partitions, key=lambda j: (_ORDER.index(j.state), j.oldest_s))
    where = f"{worst.topic}[{worst.partition}]"
    others = [j for j in judgement.partitions if j.state == worst.state and j is not worst]
    more = f" (and {len(others)} more partition{'s' if len(others) > 1 else ''})" if others else ""
    committed = "-" if worst.committed is None else str(worst.committed)
    rule = f"commit interval {judgement.interval_s:g} s + margin {margin_s:g} s"
    head = f"group {judgement.group}"
    if worst.state == "stopped":
        return (
            f"{head}: commits stopped: {where} committed offset {committed} unchanged for "
            f"{worst.since_s:.0f} s with {worst.lag_records} records waiting, the oldest "
            f"{worst.oldest_s:.0f} s old (> {judgement.limit_s + margin_s:g} s = commit interval "
            f"{judgement.interval_s:g} s + 2 x margin {margin_s:g} s){more}"
        )
    if worst.state == "not committing":
        return (
            f"{head}: not committing: {where} committed offset {committed} unchanged for "
            f"{worst.since_s:.0f} s with {worst.lag_records} records waiting, the oldest "
            f"{worst.oldest_s:.0f} s old (> {judgement.limit_s:g} s = {rule}){more}"
        )
    if worst.state == "far behind":
        return (
            f"{head}: far behind: {where} oldest unprocessed record is {worst.oldest_s:.0f} s old "
            f"(> {failing_s:g} s){more}"
        )
    if worst.state == "behind":
        return (
            f"{head}: behind: {where} oldest unprocessed record is {worst.oldest_s:.0f} s old "
            f"(> {judgement.limit_s:g} s = {rule}){' while commits move' if judgement.samples > 1 else ''}"
            f"{more}"
        )
    return (
        f"{head}: lag growing: {where} from at most {worst.grew_from} to {worst.lag_records} records "
        f"over {judgement.window_s:.0f} s, the oldest {worst.oldest_s:.0f} s old{more}"
    )
