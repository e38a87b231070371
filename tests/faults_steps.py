"""Steps the fault tests of the pipeline's processes share: how far the stream got, waiting for
growth or acknowledgements with a deadline (no process of the pipeline may die meanwhile), which
partitions a worker decides, and the ending (stop the producer, reconcile, the healthy-brokers
counts)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from faults_pipeline import Pipeline, Proc
from faults_reconcile import Counts, reconcile
from faults_traffic import NOT_HANDED, Sender, Traffic
from streams_kafka import wait_until

from mic_pipeline.config import Settings
from schemas.topics import Family


def stream_outputs(settings: Settings, only: Collection[int] | None = None) -> int:
    """Records the stream has written to the enriched topics so far (their end offsets), on every
    partition or `only` those."""
    from kafka import KafkaConsumer, TopicPartition

    partitions = [
        TopicPartition(settings.topic(family.enriched_topic), partition)
        for family in Family
        for partition in range(settings.partitions)
        if only is None or partition in only
    ]
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        ends: dict[Any, int] = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    return sum(ends.values())


def wait_for_growth(
    count: Callable[[], int], more: int, what: str, pipeline: Pipeline, timeout_s: float = 120.0
) -> int:
    """Until `count()` exceeds its present value by `more` (no process of the pipeline died); the
    value that did."""
    start = count()
    seen = [start]

    def grown() -> bool:
        pipeline.check_alive()
        seen.append(count())
        return seen[-1] >= start + more

    wait_until(grown, timeout_s, f"{what}: not {more} more than {start}", interval_s=1.0)
    return seen[-1]


def wait_for_acknowledgements(traffic: Traffic, more: int, when: str, pipeline: Pipeline) -> None:
    """Until `more` records more than now are acknowledged (the producer runs in the background)."""
    target = len(traffic.acknowledged()) + more

    def acknowledged() -> bool:
        pipeline.check_alive()
        return len(traffic.acknowledged()) >= target

    wait_until(acknowledged, 120, f"{more} records acknowledged {when}")


def owned(worker: Proc) -> list[int]:
    """The stream partitions `worker` decides now (its `/health` document; none while rebalancing)."""
    _, document = worker.get("/health")
    return list(document.get("partitions", [])) if isinstance(document, dict) else []


def stop_sending_and_reconcile(
    sender: Sender, pipeline: Pipeline, traffic: Traffic, worker: Proc, notes: dict[str, Any]
) -> Counts:
    """Stop the producer, check every process still runs, then the reconciliation."""
    sender.stopping.set()
    sender.finish()
    pipeline.check_alive()
    return reconcile(pipeline.settings, traffic, [worker], notes=notes)


def assert_every_record_acknowledged_and_accounted(traffic: Traffic, counts: Counts) -> None:
    """The brokers stayed healthy: every record handed over was acknowledged, and the run shows
    each kind of outcome (rows landed, dead letters, duplicates dropped)."""
    assert all(sent.error == NOT_HANDED for sent in traffic.records if not sent.handed)
    assert counts.failed == 0, "the brokers were healthy: no record may fail"
    assert counts.acknowledged == counts.produced
    assert counts.landed > 0 and counts.dead_letters > 0 and counts.duplicates_dropped > 0
