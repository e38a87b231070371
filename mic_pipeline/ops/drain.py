"""`mic-pipeline drain`: wait until every consumer group has processed everything on the pipeline's topics.

Drained means, continuously for the settle period: every group (the named ones, or every group with
committed offsets on the pipeline's topics) has zero lag on every partition of the topics it
consumes, every named group has committed something, and every non-empty family input or enriched
topic has at least one group committed on it (so a consumer that has not started yet is not
mistaken for one that finished).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mic_pipeline.config import Settings
from mic_pipeline.ops.kafka_probe import KafkaProbe
from mic_pipeline.ops.verdict import GroupStatus
from schemas.topics import ENRICHED_TOPICS, INPUT_TOPICS


def still_pending(
    groups: Sequence[GroupStatus],
    missing_groups: Sequence[str],
    topic_sizes: Mapping[str, int],
) -> list[str]:
    """What keeps the pipeline from being drained, one line each; empty when drained.

    `topic_sizes` maps the family input and enriched topics to their record counts (end minus
    beginning offsets summed over partitions).
    """
    pending = [
        f"{g.group} {p.topic}[{p.partition}]: {p.lag_records} records behind "
        f"(committed {'-' if p.committed is None else p.committed}, end {p.end})"
        for g in groups
        for p in g.partitions
        if p.lag_records > 0
    ]
    pending.extend(f"{name}: no committed offsets yet" for name in missing_groups)
    consumed = {p.topic for g in groups for p in g.partitions}
    pending.extend(
        f"{topic}: {size} records but no consumer group has committed on it"
        for topic, size in sorted(topic_sizes.items())
        if size > 0 and topic not in consumed
    )
    return pending


@dataclass(frozen=True)
class DrainResult:
    """Whether the pipeline drained in time, after how long, and what was pending at the end."""

    drained: bool
    elapsed_s: float
    pending: tuple[str, ...]


def drain(
    settings: Settings,
    groups: Sequence[str] | None,
    timeout_s: float,
    settle_s: float = 3.0,
    interval_s: float = 0.5,
    progress: Callable[[list[str]], None] | None = None,
) -> DrainResult:
    """Poll the broker every `interval_s` until `still_pending` stays empty for `settle_s`, or until
    `timeout_s` has passed (then `drained` is False and `pending` says what still lags)."""
    started = time.monotonic()
    deadline = started + timeout_s
    clear_since: float | None = None
    pending: list[str] = ["nothing measured yet"]
    with KafkaProbe(settings) as probe:
        while True:
            pending = _measure(probe, settings, groups)
            now = time.monotonic()
            if pending:
                clear_since = None
                if progress is not None:
                    progress(pending)
            elif clear_since is None:
                clear_since = now
            if clear_since is not None and now - clear_since >= settle_s:
                return DrainResult(True, now - started, ())
            if now >= deadline:
                return DrainResult(False, now - started, tuple(pending))
            time.sleep(min(interval_s, max(0.0, deadline - now)))


def _measure(probe: KafkaProbe, settings: Settings, groups: Sequence[str] | None) -> list[str]:
    topics = probe.pipeline_topics()
    committed = probe.committed_offsets(groups, topics)
    statuses = probe.group_statuses(
        {g: o for g, o in committed.items() if o}, datetime.now(UTC), with_age=False
    )
    watched = [settings.topic(t) for t in (*INPUT_TOPICS, *ENRICHED_TOPICS) if settings.topic(t) in topics]
    partitions = probe.partitions(watched)
    ends = probe.end_offsets(partitions)
    starts = probe.beginning_offsets(partitions)
    sizes: dict[str, int] = dict.fromkeys(watched, 0)
    for tp in partitions:
        sizes[tp.topic] += ends[tp] - starts[tp]
    return still_pending(statuses, [g for g, o in committed.items() if not o], sizes)
