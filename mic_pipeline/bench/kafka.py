"""Kafka helpers of the bench: a topic prefix per stage, publishing, committed and end offsets."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from mic_pipeline.config import Settings
from mic_pipeline.infra.topics import admin_client, create_topics
from producers.publisher import EventPublisher

Record = tuple[str, bytes | None, bytes]
"""(logical topic, key, value)."""


def stage_settings(base: Settings, run_id: str, stage: str, work: Path) -> Settings:
    """Settings of one stage: its own topic prefix (so its consumer groups and topics are its own),
    state directory and warehouse (SQLite file and Parquet dataset) under `work/<stage>`."""
    directory = work / stage
    directory.mkdir(parents=True, exist_ok=True)
    warehouse = directory / "warehouse"
    return dataclasses.replace(
        base,
        topic_prefix=f"bench{run_id}-{stage.replace('_', '')}.",
        state_dir=directory / "state",
        warehouse_dir=warehouse,
        database_url=f"sqlite:///{warehouse / 'warehouse.db'}",
    )


def publish(settings: Settings, records: Iterable[Record]) -> tuple[int, float]:
    """Create the stage's pipeline topics and publish `records` with the project's publisher
    (acks=all, idempotent, lz4); returns (records, seconds until all were acknowledged)."""
    create_topics(settings)
    started = time.perf_counter()
    count = 0
    with EventPublisher(settings) as publisher:
        for topic, key, value in records:
            publisher.publish_raw(topic, key, value)
            count += 1
    return count, time.perf_counter() - started


def delete_stage(settings: Settings) -> None:
    """Delete every topic and consumer group whose name contains the stage's prefix (Quix names its
    changelog and repartition topics `changelog__<group>--...` and `repartition__<group>--...`)."""
    prefix = settings.topic_prefix
    with admin_client(settings) as admin:
        groups = [g["group_id"] for g in admin.list_groups() if prefix in g["group_id"]]
        if groups:
            admin.delete_groups(groups)
        topics = [t for t in admin.list_topics() if prefix in t]
        if topics:
            admin.delete_topics(topics)


class Offsets:
    """Committed offsets of consumer groups and end offsets of topics, through one admin client."""

    def __init__(self, settings: Settings) -> None:
        self._context = admin_client(settings)
        self._admin: Any = self._context.__enter__()

    def committed(self, group: str, topics: Sequence[str]) -> int:
        """The sum of `group`'s committed offsets on `topics` (0 where nothing is committed)."""
        offsets = self._admin.list_group_offsets(group).get(group, {})
        wanted = set(topics)
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic in wanted and meta.offset > 0)

    def end_total(self, topics: Sequence[str]) -> int:
        """The sum of the end offsets of every partition of `topics`."""
        from kafka import TopicPartition
        from kafka.protocol.consumer.offsets import OffsetSpec

        described = self._admin.describe_topics(list(topics))
        partitions = [
            TopicPartition(topic["name"], p["partition_index"])
            for topic in described
            for p in topic["partitions"]
        ]
        if not partitions:
            return 0
        ends = self._admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST))
        return sum(result.offset for result in ends.values())

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def __enter__(self) -> Offsets:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
