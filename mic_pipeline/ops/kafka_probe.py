"""Reading the broker for the operator tools: consumer groups, offsets, lag, throughput, topic ranges.

kafka-python 3's admin client names the calls `list_groups` / `list_group_offsets` (older releases:
`list_consumer_groups` / `list_consumer_group_offsets`). A plain group-less consumer answers end
offsets, `offsets_for_times` and reads records at given offsets; it never commits anything.

"The pipeline's topics" are the contract and pipeline topics of `schemas.topics` under the settings'
prefix, and every other topic named `<prefix>mic.*` or `<prefix>mic-*` (the internal topics of the
faust app `<prefix>mic-streams`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from mic_pipeline.config import Settings
from mic_pipeline.kafka_clients import kafka_python_options
from mic_pipeline.ops.verdict import GroupStatus, PartitionLag, TopicThroughput
from schemas.topics import AGGREGATES_TOPIC, DEADLETTER_TOPIC, ENRICHED_TOPICS, INPUT_TOPICS

log = logging.getLogger(__name__)

KNOWN_TOPICS: tuple[str, ...] = (*INPUT_TOPICS, *ENRICHED_TOPICS, DEADLETTER_TOPIC, AGGREGATES_TOPIC)


def is_pipeline_topic(physical: str, settings: Settings) -> bool:
    """Whether a physical topic name belongs to this pipeline (see the module docstring)."""
    if physical in {settings.topic(name) for name in KNOWN_TOPICS}:
        return True
    return physical.startswith((settings.topic("mic."), settings.topic("mic-")))


def partition_lag(
    topic: str,
    partition: int,
    committed: int | None,
    start: int,
    end: int,
    oldest_timestamp_ms: int | None,
    now_ms: int,
) -> PartitionLag:
    """Lag of one partition: records from the committed offset (or the first retained one) to the end,
    and the age of the oldest unprocessed record (0 when none is unprocessed or none was readable)."""
    position = start if committed is None else max(committed, start)
    lag_records = max(0, end - position)
    lag_seconds = 0.0
    if lag_records > 0 and oldest_timestamp_ms is not None:
        lag_seconds = max(0.0, (now_ms - oldest_timestamp_ms) / 1000.0)
    return PartitionLag(topic, partition, committed, end, lag_records, lag_seconds)


@dataclass
class KafkaProbe:
    """Admin client plus a group-less consumer on one broker; use as a context manager."""

    settings: Settings
    timeout_ms: int = 5000

    def __post_init__(self) -> None:
        common: dict[str, Any] = {
            "bootstrap_servers": self.settings.kafka_bootstrap,
            "request_timeout_ms": self.timeout_ms,
            "bootstrap_timeout_ms": self.timeout_ms,
        }
        self.admin = KafkaAdminClient(**kafka_python_options(self.settings, client_id="mic-ops", **common))
        try:
            self.consumer = KafkaConsumer(**kafka_python_options(
                self.settings, client_id="mic-ops-reader", enable_auto_commit=False, group_id=None, **common
            ))  # fmt: skip
        except Exception:
            self.admin.close()
            raise

    def __enter__(self) -> KafkaProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close both clients."""
        self.consumer.close()
        self.admin.close()

    def pipeline_topics(self) -> set[str]:
        """The existing topics that belong to this pipeline."""
        return {t for t in self.admin.list_topics() if is_pipeline_topic(t, self.settings)}

    def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """Every partition of `topics` (a topic the broker does not know has none; one this user may
        not describe raises `TopicAuthorizationFailedError`: kafka-python's consumer only logs it)."""
        result: list[TopicPartition] = []
        for topic in sorted(set(topics)):
            ids = self.consumer.partitions_for_topic(topic) or set()
            if not ids and any(t["error_code"] == 29 for t in self.admin.describe_topics([topic])):
                raise TopicAuthorizationFailedError(topic)
            result.extend(TopicPartition(topic, p) for p in sorted(ids))
        return result

    def committed_offsets(
        self, groups: Sequence[str] | None, topics: set[str]
    ) -> dict[str, dict[TopicPartition, int]]:
        """Committed offsets on `topics` per group: of `groups`, or of every group known to the broker
        (groups without a committed offset on `topics` are then left out)."""
        names = list(groups) if groups else sorted(g["group_id"] for g in self.admin.list_groups())
        if not names:
            return {}
        offsets = self._group_offsets(names, strict=bool(groups))
        result: dict[str, dict[TopicPartition, int]] = {}
        for name in names:
            mine = {
                tp: meta.offset
                for tp, meta in offsets.get(name, {}).items()
                if tp.topic in topics and meta.offset >= 0
            }
            if mine or groups:
                result[name] = mine
        return result

    def _group_offsets(self, names: list[str], strict: bool) -> dict[str, Any]:
        """`list_group_offsets` for all `names` at once; when that fails (any one group's error fails
        the whole call) and the groups were discovered rather than named (`strict` False), group by
        group, leaving out the groups the broker cannot answer for (logged)."""
        try:
            return dict(self.admin.list_group_offsets(names))
        except KafkaError:
            if strict:
                raise
        result: dict[str, Any] = {}
        for name in names:
            try:
                result.update(self.admin.list_group_offsets([name]))
            except KafkaError as error:
                log.warning("skipping consumer group %s: %s", name, error)
        return result

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset to be written per partition."""
        if not partitions:
            return {}
        return dict(self.consumer.end_offsets(list(partitions), timeout_ms=self.timeout_ms))

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The first retained offset per partition."""
        if not partitions:
            return {}
        return dict(self.consumer.beginning_offsets(list(partitions), timeout_ms=self.timeout_ms))

    def offsets_at(
        self, partitions: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        """Per partition, the first offset whose record timestamp is >= `timestamp_ms`; the end offset
        where no record is that recent."""
        if not partitions:
            return {}
        found = self.consumer.offsets_for_times(
            {tp: timestamp_ms for tp in partitions}, timeout_ms=self.timeout_ms
        )
        ends = self.end_offsets(partitions)
        return {tp: (ends[tp] if found.get(tp) is None else found[tp].offset) for tp in partitions}

    def arrivals_since(self, topic: str, since_ms: int) -> tuple[int, int | None]:
        """Records appended to `topic` with a timestamp >= `since_ms`, and the earliest such timestamp
        (None: none): one ListOffsets request by time plus the end offsets, no record is read."""
        partitions = self.partitions([topic])
        if not partitions:
            return 0, None
        found = self.consumer.offsets_for_times(
            {tp: since_ms for tp in partitions}, timeout_ms=self.timeout_ms
        )
        ends = self.end_offsets(partitions)
        count, first = 0, None
        for tp in partitions:
            hit = found.get(tp)
            if hit is None:
                continue
            count += ends[tp] - hit.offset
            first = hit.timestamp if first is None else min(first, hit.timestamp)
        return count, first

    def group_statuses(
        self, committed: Mapping[str, Mapping[TopicPartition, int]], now: datetime, with_age: bool = True
    ) -> tuple[GroupStatus, ...]:
        """Lag of each group on every partition of each topic it has committed on; `with_age` False
        skips reading the oldest unprocessed records (every `lag_seconds` is then 0)."""
        topics = {tp.topic for offsets in committed.values() for tp in offsets}
        partitions = self.partitions(topics)
        ends = self.end_offsets(partitions)
        starts = self.beginning_offsets(partitions)
        wanted: dict[TopicPartition, set[int]] = {}
        for offsets in committed.values():
            group_topics = {tp.topic for tp in offsets}
            for tp in partitions:
                if tp.topic not in group_topics:
                    continue
                position = max(offsets.get(tp, starts[tp]), starts[tp])
                if position < ends[tp]:
                    wanted.setdefault(tp, set()).add(position)
        timestamps = self.timestamps_at(wanted, ends) if with_age else {}
        now_ms = int(now.timestamp() * 1000)
        statuses = []
        for group, offsets in sorted(committed.items()):
            group_topics = {tp.topic for tp in offsets}
            lags = tuple(
                partition_lag(
                    tp.topic,
                    tp.partition,
                    offsets.get(tp),
                    starts[tp],
                    ends[tp],
                    timestamps.get((tp, max(offsets.get(tp, starts[tp]), starts[tp]))),
                    now_ms,
                )
                for tp in partitions
                if tp.topic in group_topics
            )
            statuses.append(GroupStatus(group, lags))
        return tuple(statuses)

    def timestamps_at(
        self, positions: Mapping[TopicPartition, set[int]], ends: Mapping[TopicPartition, int]
    ) -> dict[tuple[TopicPartition, int], int]:
        """Kafka timestamp of the first record at or after each position, keyed by (partition, position).

        One read per round takes one pending position of every partition, so groups sharing a
        partition at different offsets cost one round each. Positions a round left unread (a busy
        broker) are read once more: an unread age would count as 0 s, hiding the lag.
        """
        result: dict[tuple[TopicPartition, int], int] = {}
        for _attempt in range(2):  # a busy broker may leave a partition unread in its round: once more
            pending = {
                tp: sorted(p for p in offsets if (tp, p) not in result)
                for tp, offsets in positions.items()
            }
            pending = {tp: offsets for tp, offsets in pending.items() if offsets}
            while pending:
                round_positions = {tp: offsets.pop() for tp, offsets in pending.items()}
                pending = {tp: offsets for tp, offsets in pending.items() if offsets}
                for record in self.read_first(round_positions, ends):
                    tp = TopicPartition(record.topic, record.partition)
                    result[(tp, round_positions[tp])] = record.timestamp
        return result

    def read_first(
        self, positions: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
    ) -> list[ConsumerRecord]:
        """The first record at or after each position (fewer when a partition yields none in time)."""
        firsts: dict[TopicPartition, ConsumerRecord] = {}
        with closing(self.read_ranges({tp: (pos, ends[tp]) for tp, pos in positions.items()})) as records:
            for record in records:
                tp = TopicPartition(record.topic, record.partition)
                if tp not in firsts:
                    firsts[tp] = record
                    self.consumer.pause(tp)
                if len(firsts) == len(positions):
                    break
        return list(firsts.values())

    def read_ranges(
        self, ranges: Mapping[TopicPartition, tuple[int, int]], timeout_s: float | None = None
    ) -> Generator[ConsumerRecord, None, None]:
        """Records of each partition from `start` (inclusive) to `end` (exclusive), partition by
        partition in offset order; stops when every range is read or after `timeout_s`
        (default: twice the probe timeout) without new records."""
        todo = {tp: rng for tp, rng in ranges.items() if rng[0] < rng[1]}
        if not todo:
            return
        self.consumer.assign(list(todo))
        self.consumer.resume(*todo)
        for tp, (start, _end) in todo.items():
            self.consumer.seek(tp, start)
        idle_limit = timeout_s if timeout_s is not None else 2 * self.timeout_ms / 1000
        last_progress = time.monotonic()
        try:
            while todo and time.monotonic() - last_progress < idle_limit:
                batches = self.consumer.poll(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    last_progress = time.monotonic()
                    for record in records:
                        if tp in todo and record.offset < todo[tp][1]:
                            yield record
                for tp in list(todo):
                    if self.consumer.position(tp) >= todo[tp][1]:
                        del todo[tp]
                        self.consumer.pause(tp)
        finally:
            self.consumer.unsubscribe()

    def throughput(
        self, topics: Sequence[str], now: datetime, window_s: float = 60.0
    ) -> tuple[TopicThroughput, ...]:
        """Records appended to each topic (by record timestamp) during the `window_s` before `now`."""
        result = []
        since_ms = int((now.timestamp() - window_s) * 1000)
        for topic in topics:
            partitions = self.partitions([topic])
            starts = self.offsets_at(partitions, since_ms)
            ends = self.end_offsets(partitions)
            result.append(TopicThroughput(topic, sum(ends[tp] - starts[tp] for tp in partitions), window_s))
        return tuple(result)
