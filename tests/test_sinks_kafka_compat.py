"""`sinks.kafka_python_compat`: an assigned partition that kafka-python never fetches again does not
hold the sink's rows back -- the sink starts over with a new consumer."""

from __future__ import annotations

import dataclasses

import kafka
import pytest
from prometheus_client import REGISTRY
from sinks_records import scenario
from test_sinks_runner import LANDING_TIMEOUT, expected_counts, in_thread, parquet_counts, publish, wait_for

from mic_pipeline.config import Settings
from sinks.kafka_python_compat import UnfetchableWatch, watch_needed


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
    pending-revocation flag: not fetchable, for good); the rows published after it still land."""
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
        with subscription._lock:
            stuck = subscription.assigned_partitions()
            for tp in stuck:
                subscription.assignment[tp].mark_pending_revocation(True)
        assert stuck and not any(subscription.is_fetchable(tp) for tp in stuck)
        publish(settings, second)
        wait_for(
            lambda: parquet_counts(settings.warehouse_dir) == expected_counts(first + second),
            LANDING_TIMEOUT,
            "the rows published after the partitions became unfetchable",
        )
        assert running.runner._consumer is not consumer
        assert running.thread.is_alive()
    assert _renewals(running.runner.sink.name) == before + 1
