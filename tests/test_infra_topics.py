"""Topic layout (pure) and idempotent creation on the real broker."""

from __future__ import annotations

import dataclasses

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.infra.topics import (
    DEFAULT_RETENTION_MS,
    MAX_RECORD_BYTES,
    TopicMismatchError,
    TopicSpec,
    admin_client,
    compare_topic,
    create_topics,
    pipeline_topic_specs,
)

EXPECTED_LOGICAL_NAMES = [
    "mic.membership",
    "mic.orders",
    "mic.patents",
    "mic.factoring",
    "mic.deadletter",
    "mic.membership.enriched",
    "mic.orders.enriched",
    "mic.patents.enriched",
    "mic.factoring.enriched",
    "mic.aggregates",
]


def test_specs_cover_every_topic_with_prefix_partitions_and_retention() -> None:
    settings = Settings(topic_prefix="run1.", partitions=4)
    specs = pipeline_topic_specs(settings, retention_ms=3_600_000)
    assert [spec.name for spec in specs] == [f"run1.{name}" for name in EXPECTED_LOGICAL_NAMES]
    assert {spec.partitions for spec in specs} == {4}
    by_name = {spec.name: spec for spec in specs}
    assert by_name["run1.mic.aggregates"].config == {"cleanup.policy": "compact"}
    large = {"cleanup.policy": "delete", "retention.ms": "3600000", "max.message.bytes": "16777216"}
    assert by_name["run1.mic.deadletter"].config == large
    assert by_name["run1.mic.orders"].config == large
    enriched = by_name["run1.mic.orders.enriched"].config
    assert enriched == {"cleanup.policy": "delete", "retention.ms": "3600000"}


def test_specs_default_retention_is_seven_days() -> None:
    spec = pipeline_topic_specs(Settings())[0]
    assert spec.config["retention.ms"] == str(DEFAULT_RETENTION_MS) == "604800000"


def test_specs_reject_non_positive_retention() -> None:
    with pytest.raises(ValueError, match="retention_ms"):
        pipeline_topic_specs(Settings(), retention_ms=0)


def test_compare_topic_reports_partitions_and_config_differences() -> None:
    spec = TopicSpec("t", 6, {"cleanup.policy": "delete", "retention.ms": "100"})
    assert compare_topic(spec, 6, {"cleanup.policy": "delete", "retention.ms": "100", "x": "y"}) == ()
    problems = compare_topic(spec, 3, {"cleanup.policy": "compact", "retention.ms": "100"})
    assert problems == ("has 3 partitions, wanted 6", "cleanup.policy=compact, wanted delete")
    assert compare_topic(spec, 6, {}) == (
        "cleanup.policy=None, wanted delete",
        "retention.ms=None, wanted 100",
    )


@pytest.mark.kafka
def test_create_topics_is_idempotent_with_partitions_and_config(settings: Settings) -> None:
    from kafka.admin._configs import ConfigResource, ConfigResourceType

    names = create_topics(settings, retention_ms=86_400_000)
    assert names == [settings.topic(name) for name in EXPECTED_LOGICAL_NAMES]
    assert create_topics(settings, retention_ms=86_400_000) == names

    with admin_client(settings.kafka_bootstrap) as admin:
        try:
            described = {topic["name"]: topic for topic in admin.describe_topics(names)}
            assert {name: len(described[name]["partitions"]) for name in names} == dict.fromkeys(
                names, settings.partitions
            )
            resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
            configs = admin.describe_configs(resources, config_filter="all")["topic"]
            aggregates = settings.topic("mic.aggregates")
            assert configs[aggregates]["cleanup.policy"]["value"] == "compact"
            for name in names:
                if name != aggregates:
                    assert configs[name]["cleanup.policy"]["value"] == "delete"
                    assert configs[name]["retention.ms"]["value"] == "86400000"
            for name in (settings.topic("mic.orders"), settings.topic("mic.deadletter")):
                assert configs[name]["max.message.bytes"]["value"] == str(MAX_RECORD_BYTES)
        finally:
            admin.delete_topics(names)


@pytest.mark.kafka
def test_existing_topic_with_other_partition_count_is_reported(settings: Settings) -> None:
    names = create_topics(settings)
    try:
        with pytest.raises(TopicMismatchError) as caught:
            create_topics(dataclasses.replace(settings, partitions=settings.partitions + 1))
        mismatched = {outcome.spec.name: outcome.problems for outcome in caught.value.outcomes}
        assert sorted(mismatched) == sorted(names)
        wanted = f"has {settings.partitions} partitions, wanted {settings.partitions + 1}"
        assert all(problems == (wanted,) for problems in mismatched.values())
    finally:
        with admin_client(settings.kafka_bootstrap) as admin:
            admin.delete_topics(names)


@pytest.mark.kafka
def test_config_drift_is_reported_then_fixed_only_when_asked(settings: Settings) -> None:
    from kafka.admin._configs import ConfigResource, ConfigResourceType

    names = create_topics(settings, retention_ms=3_600_000)
    try:
        with pytest.raises(TopicMismatchError) as caught:
            create_topics(settings, retention_ms=7_200_000)
        assert {outcome.problems for outcome in caught.value.outcomes} == {
            ("retention.ms=3600000, wanted 7200000",)
        }
        assert len(caught.value.outcomes) == 9  # all but the compacted mic.aggregates

        assert create_topics(settings, retention_ms=7_200_000, update_config=True) == names
        assert create_topics(settings, retention_ms=7_200_000) == names
        with admin_client(settings.kafka_bootstrap) as admin:
            orders = settings.topic("mic.orders")
            resources = [ConfigResource(ConfigResourceType.TOPIC, orders)]
            config = admin.describe_configs(resources, config_filter="all")["topic"][orders]
            assert config["retention.ms"]["value"] == "7200000"
            assert config["max.message.bytes"]["value"] == str(MAX_RECORD_BYTES)  # untouched
    finally:
        with admin_client(settings.kafka_bootstrap) as admin:
            admin.delete_topics(names)
