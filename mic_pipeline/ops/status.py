"""`mic-pipeline status`: measure the pipeline (Kafka + warehouse) into a `StatusSnapshot`, and print it.

The measuring is I/O (`collect_status`); the verdict is `verdict.evaluate`; the text rendering is a
pure function of the snapshot and its assessment.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from mic_pipeline.config import HealthEndpoint, Settings
from mic_pipeline.ops.verdict import Assessment, ComponentHealth, GroupStatus, StatusSnapshot
from mic_pipeline.text import printable
from schemas.topics import DEADLETTER_TOPIC, INPUT_TOPICS

THROUGHPUT_WINDOW_S = 60.0
DEAD_LETTER_WINDOW = timedelta(hours=1)


def collect_status(
    settings: Settings,
    groups: Sequence[str] | None = None,
    timeout_ms: int = 5000,
    health_endpoints: Sequence[HealthEndpoint] = (),
) -> StatusSnapshot:
    """Measure everything `status` reports. A broker, warehouse or component that cannot be reached
    is recorded in the snapshot, never raised."""
    from kafka.errors import KafkaError

    from mic_pipeline.ops.components import collect_components
    from mic_pipeline.ops.deadletter_io import read_dead_letters
    from mic_pipeline.ops.deadletters import count_by_reason
    from mic_pipeline.ops.kafka_probe import KNOWN_TOPICS, KafkaProbe
    from mic_pipeline.ops.warehouse_probe import read_warehouse

    now = datetime.now(UTC)
    components = collect_components(health_endpoints)
    warehouse = read_warehouse(settings.database_url, now)
    try:
        with KafkaProbe(settings, timeout_ms=timeout_ms) as probe:
            topics = probe.pipeline_topics()
            committed = probe.committed_offsets(groups, topics)
            statuses = probe.group_statuses({g: o for g, o in committed.items() if o}, now)
            input_topics = [settings.topic(t) for t in INPUT_TOPICS if settings.topic(t) in topics]
            throughput = probe.throughput(input_topics, now, THROUGHPUT_WINDOW_S)
            dead_letters = count_by_reason(
                read_dead_letters(probe, settings.topic(DEADLETTER_TOPIC), since=now - DEAD_LETTER_WINDOW)
            )
    except (KafkaError, OSError) as error:
        from mic_pipeline.kafka_clients import security_problem

        refused = security_problem(error, settings)
        return StatusSnapshot(
            taken_at=now,
            broker_error=f"{settings.kafka_bootstrap}: {error}" if refused is None else refused,
            warehouse_error=warehouse.error,
            freshness=warehouse.freshness,
            quality=warehouse.quality,
            components=components,
        )
    return StatusSnapshot(
        taken_at=now,
        groups=statuses,
        missing_groups=tuple(g for g, offsets in committed.items() if not offsets),
        missing_topics=tuple(settings.topic(t) for t in KNOWN_TOPICS if settings.topic(t) not in topics),
        throughput=throughput,
        dead_letters_last_hour=dead_letters,
        warehouse_error=warehouse.error,
        freshness=warehouse.freshness,
        quality=warehouse.quality,
        components=components,
    )


def record_lag_metrics(groups: Sequence[GroupStatus]) -> None:
    """Publish the measured lag on `mic_consumer_lag_records` of this process's metrics registry."""
    from mic_pipeline.metrics import CONSUMER_LAG

    for group in groups:
        for p in group.partitions:
            CONSUMER_LAG.labels(group=group.group, topic=p.topic, partition=str(p.partition)).set(
                p.lag_records
            )


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
        for group in snapshot.groups:
            lines.append(
                f"  {group.group}: lag {group.lag_records} records, oldest unprocessed "
                f"{group.lag_seconds:.1f} s"
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
        lines.extend(f"  {name}: no committed offsets" for name in snapshot.missing_groups)
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
        lines.append("warehouse freshness (newest occurred_at):")
        for fresh in snapshot.freshness:
            newest = "-" if fresh.newest_occurred_at is None else fresh.newest_occurred_at.isoformat()
            lines.append(f"  {fresh.table:<20} {newest:<32} {_age(fresh.age_seconds)}")
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
