"""The owner fencing of the stream's state changelog, as the records in the topic show it.

Read with a plain kafka-python consumer, headers included, independently of `streams.store`: the
changelog is `<app id>-state-changelog`, one partition per input partition. A worker that takes a
partition writes a *claim* first (key `~claim:<32 hex>`, value JSON `{"worker": ..., "at": ...}`);
the claim's offset is its *epoch* there, and every state record it writes carries the header
`mic-owner` = that epoch in ASCII decimal. A record whose epoch is older than the latest claim
before it in its partition is *stale*: written by an owner after a newer owner's claim (a zombie's
late checkpoint), and every load must skip it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mic_pipeline.config import Settings

OWNER_HEADER = "mic-owner"
CLAIM_PREFIX = "~claim:"
NO_EPOCH = -1
"""The epoch of a record without a `mic-owner` header, and the latest claim before any claim."""
CHANGELOG = "mic-streams-state-changelog"
"""Its logical name (no prefix): the app id is `<prefix>mic-streams` (`streams.settings`)."""
_FENCED = re.compile(r"partition (\d+)\D+?(\d+) changelog records fenced")
"""The line a worker logs when a load skipped stale records of a partition."""


@dataclass(frozen=True)
class Entry:
    """One record of the changelog."""

    partition: int
    offset: int
    key: str
    epoch: int
    """Its `mic-owner` header (`NO_EPOCH` when it has none)."""
    claimant: str | None = None
    """The `worker` of a claim; None for a state record."""

    @property
    def is_claim(self) -> bool:
        return self.key.startswith(CLAIM_PREFIX)


@dataclass
class Changelog:
    """Every record of the state changelog, per partition in offset order."""

    partitions: dict[int, list[Entry]] = field(default_factory=dict)

    def claims(self, partition: int, since: int = 0) -> list[Entry]:
        """The claims of `partition` at offsets >= `since`."""
        return [e for e in self.partitions.get(partition, []) if e.is_claim and e.offset >= since]

    def state(self, partition: int, since: int = 0) -> list[Entry]:
        """The state records (not claims) of `partition` at offsets >= `since`."""
        return [e for e in self.partitions.get(partition, []) if not e.is_claim and e.offset >= since]

    def latest_claim(self, partition: int, before: int) -> Entry | None:
        """The last claim of `partition` at an offset below `before`."""
        claims = [e for e in self.partitions.get(partition, []) if e.is_claim and e.offset < before]
        return claims[-1] if claims else None

    def stale(self) -> list[Entry]:
        """State records whose epoch is older than the latest claim before them (module doc)."""
        found: list[Entry] = []
        for entries in self.partitions.values():
            latest = NO_EPOCH
            for entry in entries:
                if entry.is_claim:
                    latest = entry.offset
                elif entry.epoch < latest:
                    found.append(entry)
        return found


class ChangelogTail:
    """The changelog read by a plain consumer, from `since` (offset per partition; default the
    beginning): each `read` adds the records up to the end offsets of that moment to `changelog`."""

    def __init__(self, settings: Settings, since: dict[int, int] | None = None) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.name = settings.topic(CHANGELOG)
        self.changelog = Changelog({p: [] for p in range(settings.partitions)})
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        self.partitions = [TopicPartition(self.name, p) for p in range(settings.partitions)]
        self.consumer.assign(self.partitions)
        for tp in self.partitions:
            self.consumer.seek(tp, (since or {}).get(tp.partition, 0))

    def read(self) -> Changelog:
        consumer, partitions = self.consumer, self.partitions
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            # a partial read would make every check after it wrong: fail instead
            assert time.monotonic() < deadline, f"{self.name}: not read to its end offsets {ends} in 60 s"
            for tp, records in consumer.poll(timeout_ms=500).items():
                entries = self.changelog.partitions[tp.partition]
                entries.extend(_entry(record) for record in records)
                entries.sort(key=lambda entry: entry.offset)
        return self.changelog

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> ChangelogTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_changelog(settings: Settings, since: dict[int, int] | None = None) -> Changelog:
    """The changelog's records up to its current end offsets, from `since` or the beginning."""
    with ChangelogTail(settings, since) as tail:
        return tail.read()


def _entry(record: Any) -> Entry:
    key = record.key.decode() if record.key is not None else ""
    raw = dict(record.headers or []).get(OWNER_HEADER)
    epoch = int(raw) if raw is not None else NO_EPOCH
    claimant = str(json.loads(record.value)["worker"]) if key.startswith(CLAIM_PREFIX) else None
    return Entry(record.partition, record.offset, key, epoch, claimant)


def changelog_ends(settings: Settings) -> dict[int, int]:
    """The changelog's end offset per partition now."""
    from kafka import KafkaConsumer, TopicPartition

    name = settings.topic(CHANGELOG)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = [TopicPartition(name, p) for p in range(settings.partitions)]
        ends: dict[Any, int] = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def fenced_in_log(log: Path) -> dict[int, int]:
    """Per partition, the stale records the worker's last load of it skipped (its log lines)."""
    fenced: dict[int, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = _FENCED.search(line)
        if match:
            fenced[int(match[1])] = int(match[2])
    return fenced
