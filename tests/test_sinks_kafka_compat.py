"""`mic_pipeline.kafka_python_compat`: an assigned partition that kafka-python never fetches again does not
hold the sink's rows back -- the sink starts over with a new consumer."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import kafka
import pytest
from kafka import TopicPartition
from kafka.consumer.subscription_state import SubscriptionState
from kafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY
from sinks_records import scenario
from test_sinks_runner import LANDING_TIMEOUT, expected_counts, in_thread, parquet_counts, publish, wait_for

from mic_pipeline.config import Settings
from mic_pipeline.kafka_python_compat import UnfetchableWatch, watch_needed, why_unfetchable
from mic_pipeline.ops.lag_rules import commit_interval
from mic_pipeline.ops.verdict import Thresholds
from sinks.runner import RENEWAL_BUDGET_S, RunnerConfig


def test_the_watch_is_on_for_the_installed_kafka_python_and_gated_by_version() -> None:
    """Upgrading kafka-python fails this test until someone checks whether the defect is still there
    (then extends `WATCH_VERSIONS`, or drops the watch)."""
    assert watch_needed(kafka.__version__), f"kafka-python {kafka.__version__}: re-check the defect"
    assert watch_needed("3.0.12") and not watch_needed("3.1.0") and not watch_needed("2.2.15")


def _renewals(sink: str) -> float:
    value = REGISTRY.get_sample_value(
        "mic_sink_consumer_renewals_total", {"sink": sink, "reason": "unfetchable"}
    )
    return value or 0.0


@pytest.mark.kafka
def test_partitions_left_unfetchable_are_fetched_again_by_a_new_consumer(pipeline_topics: Settings) -> None:
    """The consumer's partitions are put in the state of upstream #3131 (assigned, a stale
    pending-revocation flag: not fetchable, for good); a new consumer replaces it and the rows
    published afterwards land."""
    settings = pipeline_topics
    first, second = scenario(40), scenario(40, seed=2)
    publish(settings, first)
    running = in_thread(settings, "parquet", rows=50)
    running.runner.config = dataclasses.replace(running.runner.config, unfetchable_limit_s=3.0)
    running.runner._watch = UnfetchableWatch(3.0)
    before = _renewals(running.runner.sink.name)
    with running:
        wait_for(
            lambda: parquet_counts(settings.warehouse_dir) == expected_counts(first), LANDING_TIMEOUT, "rows"
        )
        consumer = running.runner._consumer
        subscription = consumer._subscription

        def stick() -> set[TopicPartition]:
            with subscription._lock:
                assigned: set[TopicPartition] = subscription.assigned_partitions()
                for tp in assigned:
                    subscription.assignment[tp].mark_pending_revocation(True)
            return assigned

        stuck = stick()
        assert stuck and not any(subscription.is_fetchable(tp) for tp in stuck)

        def renewed() -> bool:
            # a rebalance under load rebuilds the assignment and clears the flag (CI: the rows landed
            # through the old consumer, never renewed): keep the old consumer stuck until it is gone
            if running.runner._consumer is not consumer:
                return True
            stick()
            return False

        wait_for(renewed, LANDING_TIMEOUT, "a new consumer")
        publish(settings, second)
        wait_for(
            lambda: parquet_counts(settings.warehouse_dir) == expected_counts(first + second),
            LANDING_TIMEOUT,
            "the rows published after the partitions became unfetchable",
        )
        assert running.thread.is_alive()
    assert _renewals(running.runner.sink.name) == before + 1


def _subscription(*partitions: TopicPartition) -> SimpleNamespace:
    """A consumer stand-in around kafka-python's own `SubscriptionState`, positions set."""
    state = SubscriptionState("earliest")
    state.assign_from_user(list(partitions))
    for tp in partitions:
        state.assignment[tp].seek(OffsetAndMetadata(offset=0, metadata="", leader_epoch=-1))
    return SimpleNamespace(_subscription=state)


@pytest.mark.parametrize("group", ["mic-sink-sql", "mic-sink-parquet"])
def test_a_stuck_consumer_is_replaced_before_the_web_page_reads_degraded(group: str) -> None:
    """The watch's limit plus a renewal's rejoin and first checkpoint stay within the lag rule's
    `not committing` limit for the sinks (commit interval + margin): a sink that heals this way
    never reads DEGRADED (at a 60 s limit the quick demo's page did)."""
    limit = commit_interval(group, {}) + Thresholds().lag_margin_seconds
    assert RunnerConfig(group_id=group).unfetchable_limit_s + RENEWAL_BUDGET_S <= limit


def test_a_partition_is_stuck_after_the_limit_seen_unfetchable_at_every_turn() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = _subscription(a, b)
    consumer._subscription.mark_pending_revocation({a})  # upstream #3131's state
    watch = UnfetchableWatch(limit_s=5.0)
    seen = [watch.stuck(consumer, now=t * 0.5) for t in range(11)]  # 0 .. 5 s, 11 turns
    assert seen[:-1] == [[]] * 10 and seen[-1] == [a]
    assert why_unfetchable(consumer, a) == "pending revocation"
    assert why_unfetchable(consumer, b) == "fetchable"


def test_two_sightings_across_one_long_turn_are_not_stuck() -> None:
    """A loop that spent the whole limit in one checkpoint while a rebalance was under way."""
    a = TopicPartition("t", 0)
    consumer = _subscription(a)
    consumer._subscription.mark_pending_revocation({a})
    watch = UnfetchableWatch(limit_s=5.0)
    assert watch.stuck(consumer, now=0.0) == [] and watch.stuck(consumer, now=70.0) == []


def test_paused_or_fetchable_again_partitions_are_forgotten() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = _subscription(a, b)
    subscription = consumer._subscription
    subscription.mark_pending_revocation({a, b})
    watch = UnfetchableWatch(limit_s=1.0)
    for t in range(5):
        assert watch.stuck(consumer, now=t * 0.1) == []
    subscription.pause(b)  # the sink pauses while it retries a write: not the defect
    subscription.assignment[a].mark_pending_revocation(False)  # fetchable again
    assert watch.stuck(consumer, now=0.5) == []
    subscription.assignment[a].mark_pending_revocation(True)  # unfetchable anew: the clock restarts
    assert all(watch.stuck(consumer, now=0.6 + t * 0.1) == [] for t in range(10))  # 0.6 .. 1.5 s
    assert watch.stuck(consumer, now=1.6) == [a]
    assert why_unfetchable(consumer, b) == "paused, pending revocation"
