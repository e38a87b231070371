"""`mic-pipeline status`: measure the pipeline (Kafka + warehouse) into a `StatusSnapshot`, and print it.

The measuring is I/O (`collect_status`); the verdict is `verdict.evaluate`; the text rendering is a
pure function of the snapshot and its assessment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from mic_pipeline.config import HealthEndpoint, Settings
from mic_pipeline.ops.lag_rules import STALL_SLACK_S, commit_interval, group_topics
from mic_pipeline.ops.verdict import (
    Assessment,
    ComponentHealth,
    FamilyFreshness,
    GroupStatus,
    LagSample,
    StatusSnapshot,
)
from mic_pipeline.text import printable
from schemas.topics import DEADLETTER_TOPIC, ENRICHED_TOPICS, INPUT_TOPICS, Family

if TYPE_CHECKING:
    from mic_pipeline.ops.kafka_probe import KafkaProbe

THROUGHPUT_WINDOW_S = 60.0
DEAD_LETTER_WINDOW = timedelta(hours=1)
MIN_WINDOW_S = 5.0
MAX_AUTO_WINDOW_S = 15.0


def _oldest_waiting(
    probe: KafkaProbe, settings: Settings, groups: Sequence[str], topics: set[str], now: datetime
) -> dict[str, float]:
    """Per group, the age of the oldest retained record on the topics it consumes (the pipeline's own
    groups: theirs, `lag_rules.GROUP_TOPICS`; any other: every contract topic); a group whose topics
    hold no record is left out. One record read per non-empty partition."""
    if not groups:
        return {}
    everything = (*INPUT_TOPICS, *ENRICHED_TOPICS, DEADLETTER_TOPIC)
    wanted = {g: {settings.topic(t) for t in (group_topics(g) or everything)} & topics for g in groups}
    partitions = probe.partitions(set().union(*wanted.values()))
    starts, ends = probe.beginning_offsets(partitions), probe.end_offsets(partitions)
    positions = {tp: {starts[tp]} for tp in partitions if starts[tp] < ends[tp]}
    stamps = probe.timestamps_at(positions, ends)
    now_ms = now.timestamp() * 1000
    result = {}
    for group, names in wanted.items():
        found = [stamp for (tp, _), stamp in stamps.items() if tp.topic in names]
        if found:
            result[group] = max(0.0, (now_ms - min(found)) / 1000.0)
    return result


def collect_status(
    settings: Settings,
    groups: Sequence[str] | None = None,
    timeout_ms: int = 5000,
    health_endpoints: Sequence[HealthEndpoint] = (),
    *,
    window_s: float | None = 0.0,
    intervals: Mapping[str, float] | None = None,
) -> StatusSnapshot:
    """Measure everything `status` reports. A broker, warehouse or component that cannot be reached
    is recorded in the snapshot, never raised.

    `window_s`: how long to sample the groups' offsets first (three samples: now, half-way, at the
    end; see `window_for`); 0 takes one sample (the web page keeps its own history instead)."""
    from kafka.errors import KafkaError

    from mic_pipeline.ops.components import collect_components
    from mic_pipeline.ops.deadletter_io import read_dead_letters
    from mic_pipeline.ops.deadletters import count_by_reason
    from mic_pipeline.ops.kafka_probe import KNOWN_TOPICS, KafkaProbe
    from mic_pipeline.ops.warehouse_probe import parquet_freshness, read_warehouse

    history: tuple[LagSample, ...] = ()
    try:
        with KafkaProbe(settings, timeout_ms=timeout_ms) as probe:
            history = _sample_window(probe, groups, window_s, intervals or {})
            now = datetime.now(UTC)
            components = collect_components(health_endpoints)
            warehouse = read_warehouse(settings.database_url, now)
            freshness = warehouse.freshness + parquet_freshness(settings.warehouse_dir, now)
            topics = probe.pipeline_topics()
            committed = probe.committed_offsets(groups, topics)
            statuses = probe.group_statuses({g: o for g, o in committed.items() if o}, now)
            missing = tuple(g for g, offsets in committed.items() if not offsets)
            missing_waiting = _oldest_waiting(probe, settings, missing, topics, now)
            input_topics = [settings.topic(t) for t in INPUT_TOPICS if settings.topic(t) in topics]
            throughput = probe.throughput(input_topics, now, THROUGHPUT_WINDOW_S)
            dead_letters = count_by_reason(
                read_dead_letters(probe, settings.topic(DEADLETTER_TOPIC), since=now - DEAD_LETTER_WINDOW)
            )
            freshness = _with_arrivals(probe, settings, freshness, statuses, now)
    except (KafkaError, OSError) as error:
        from mic_pipeline.kafka_clients import security_problem

        now = datetime.now(UTC)
        warehouse = read_warehouse(settings.database_url, now)
        refused = security_problem(error, settings)
        return StatusSnapshot(
            taken_at=now,
            broker_error=f"{settings.kafka_bootstrap}: {error}" if refused is None else refused,
            broker_refused=refused is not None,
            warehouse_error=warehouse.error,
            freshness=warehouse.freshness + parquet_freshness(settings.warehouse_dir, now),
            quality=warehouse.quality,
            components=collect_components(health_endpoints),
        )
    return StatusSnapshot(
        taken_at=now,
        groups=statuses,
        missing_groups=missing,
        missing_waiting_s=missing_waiting,
        missing_topics=tuple(settings.topic(t) for t in KNOWN_TOPICS if settings.topic(t) not in topics),
        throughput=throughput,
        dead_letters_last_hour=dead_letters,
        warehouse_error=warehouse.error,
        freshness=freshness,
        quality=warehouse.quality,
        components=components,
        history=history,
    )


def window_for(group_names: Sequence[str], window_s: float | None, intervals: Mapping[str, float]) -> float:
    """The sampling window: `window_s` when given, else long enough for every group's stall rule
    (its commit interval + `STALL_SLACK_S`), at least `MIN_WINDOW_S`, at most `MAX_AUTO_WINDOW_S`."""
    if window_s is not None:
        return window_s
    needed = (commit_interval(g, intervals) + STALL_SLACK_S for g in group_names)
    return min(MAX_AUTO_WINDOW_S, max([MIN_WINDOW_S, *needed]))


def _sample_window(
    probe: KafkaProbe, groups: Sequence[str] | None, window_s: float | None, intervals: Mapping[str, float]
) -> tuple[LagSample, ...]:
    """Samples of the groups' offsets at the start and the middle of the window; returns at its end."""
    if window_s == 0:
        return ()
    started = time.monotonic()
    first = _offsets_sample(probe, groups)
    if not first.groups:
        return ()  # nothing committed: nothing to watch move
    window = window_for([g.group for g in first.groups], window_s, intervals)
    time.sleep(max(0.0, started + window / 2 - time.monotonic()))
    middle = _offsets_sample(probe, groups)
    time.sleep(max(0.0, started + window - time.monotonic()))
    return (first, middle)


def _offsets_sample(probe: KafkaProbe, groups: Sequence[str] | None) -> LagSample:
    at = datetime.now(UTC)
    committed = probe.committed_offsets(groups, probe.pipeline_topics())
    return LagSample(at, probe.group_statuses({g: o for g, o in committed.items() if o}, at, with_age=False))


def _with_arrivals(
    probe: KafkaProbe,
    settings: Settings,
    freshness: tuple[FamilyFreshness, ...],
    statuses: Sequence[GroupStatus],
    now: datetime,
) -> tuple[FamilyFreshness, ...]:
    """Each sink's freshness with the records on their way to it: the input records the stream has
    not decided yet (its lag on the family's input topic) and the enriched records the sink has not
    committed yet (its group's lag on the family's enriched topic; a sink whose group is not found --
    never committed, another group id -- by the enriched records newer than its newest landed row).
    `waiting_seconds` is the age of the oldest of them. Records the stream or the sink has handled
    without landing them (dead letters, duplicates, quarantined rows) are not waiting."""
    from streams.settings import StreamSettings

    stream_group = StreamSettings.from_env(settings).app_id
    by_group = {group.group: group for group in statuses}
    result = []
    for fresh in freshness:
        family = Family(fresh.family)
        pending, oldest = _lag_on(by_group.get(stream_group), settings.topic(family.topic))
        enriched = settings.topic(family.enriched_topic)
        name = f"mic-sink-{fresh.sink}"
        sink_group = by_group.get(settings.topic(name)) or by_group.get(name)
        if sink_group is not None and any(p.topic == enriched for p in sink_group.partitions):
            count, age = _lag_on(sink_group, enriched)
        else:
            landed = fresh.newest_landed_at
            since_ms = 0 if landed is None else int(landed.timestamp() * 1000) + 1
            count, first_ms = probe.arrivals_since(enriched, since_ms)
            age = 0.0 if first_ms is None else max(0.0, now.timestamp() - first_ms / 1000)
        waiting = max(oldest, age) if pending + count else None
        result.append(replace(fresh, inputs_since=pending + count, waiting_seconds=waiting))
    return tuple(result)


def _lag_on(group: GroupStatus | None, topic: str) -> tuple[int, float]:
    """A group's unprocessed records on `topic` and the age of the oldest (0, 0.0 without the group)."""
    if group is None:
        return 0, 0.0
    mine = [p for p in group.partitions if p.topic == topic]
    return sum(p.lag_records for p in mine), max((p.lag_seconds for p in mine), default=0.0)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "nothing landed"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_text(snapshot: StatusSnapshot, assessment: Assessment) -> str:
    """The human report of `status`: verdict and reasons first, then each section. Each line is
    escaped (`mic_pipeline.text.printable`): names and reasons can carry event data."""
    lines = [f"verdict: {assessment.verdict.value}"]
    lines.extend(f"  - {reason}" for reason in assessment.reasons)
    lines.append(f"taken at {snapshot.taken_at.isoformat(timespec='seconds')}")
    if snapshot.components:
        lines.append("components:")
        lines.extend(_component_line(c, snapshot.taken_at.timestamp()) for c in snapshot.components)
    if snapshot.broker_error is not None:
        lines.append(f"broker: {snapshot.broker_error}")
    else:
        lines.append("consumer groups:")
        if not snapshot.groups and not snapshot.missing_groups:
            lines.append("  (no group has committed offsets on the pipeline's topics)")
        judged = {j.group: j for j in assessment.groups}
        if snapshot.history:
            span = snapshot.taken_at.timestamp() - snapshot.history[0].at.timestamp()
            lines.append(f"  (window: {len(snapshot.history) + 1} samples over {span:.0f} s)")
        for group in snapshot.groups:
            judgement = judged.get(group.group)
            state = (
                ""
                if judgement is None
                else f"; {judgement.state} (commit interval {judgement.interval_s:g} s, "
                f"limit {judgement.limit_s:g} s)"
            )
            lines.append(
                f"  {group.group}: lag {group.lag_records} records, oldest unprocessed "
                f"{group.lag_seconds:.1f} s{state}"
            )
            lines.append(
                f"    {'topic':<40} {'part':>4} {'committed':>10} {'end':>10} {'lag':>8} {'lag s':>8}"
            )
            for p in group.partitions:
                committed = "-" if p.committed is None else str(p.committed)
                lines.append(
                    f"    {p.topic:<40} {p.partition:>4} {committed:>10} {p.end:>10} "
                    f"{p.lag_records:>8} {p.lag_seconds:>8.1f}"
                )
        lines.extend(
            f"  {name}: no committed offsets"
            + (f" (the oldest record on its topics is {waited:.0f} s old)" if waited is not None else "")
            for name, waited in ((n, snapshot.missing_waiting_s.get(n)) for n in snapshot.missing_groups)
        )
        lines.append("throughput (last minute):")
        lines.extend(
            f"  {t.topic:<40} {t.records:>8} records  {t.per_second:8.2f}/s" for t in snapshot.throughput
        )
        total = sum(snapshot.dead_letters_last_hour.values())
        lines.append(f"dead letters (last hour): {total}")
        lines.extend(f"  {reason:<24} {n:>8}" for reason, n in snapshot.dead_letters_last_hour.items())
    if snapshot.warehouse_error is not None:
        lines.append(f"warehouse: {snapshot.warehouse_error}")
    else:
        lines.append("warehouse freshness (newest landed_at; records on their way, the oldest's age):")
        if not snapshot.freshness:
            lines.append("  (no sink has landed anything here yet)")
        for fresh in snapshot.freshness:
            newest = "-" if fresh.newest_landed_at is None else fresh.newest_landed_at.isoformat()
            on_the_way = (
                ""
                if fresh.inputs_since is None
                else f"; {fresh.inputs_since} on their way"
                + ("" if fresh.waiting_seconds is None else f", oldest {fresh.waiting_seconds:.0f} s")
            )
            lines.append(
                f"  {fresh.table:<20} {fresh.sink:<8} {newest:<32} {_age(fresh.age_seconds)}{on_the_way}"
            )
        quality = snapshot.quality
        if not quality.available:
            lines.append("quality gate: no results recorded yet")
        else:
            lines.append(f"quality gate: {quality.failures} failed or quarantined")
            lines.extend(f"  {detail}" for detail in quality.details)
    return "\n".join(printable(line) for line in lines)


def _component_line(component: ComponentHealth, now: float) -> str:
    if component.ready and component.error is None:
        progress = component.last_progress
        note = "" if progress is None else f" (last progress {_age(max(0.0, now - progress))})"
        return f"  {component.name}: ready{note}"
    return f"  {component.describe(now)}"
