"""State every worker needs about every partition: member profiles and per-partition aggregates.

Why not co-partitioning alone: an order names its manufacturer, a patent deal its buyer, a factoring
request its debtor -- other companies, whose `member.*` events live on other partitions, possibly
owned by another worker. Why not faust's GlobalTable: its own docstring warns of endless recovery
loops with several workers, and it recovers everything before any agent starts. So the design is:

- the authoritative member state (rule 2 for membership) lives in the partitioned state table, next
  to the `member.*` events of the same key;
- every decided member state is also sent to a compacted internal topic (`<app>-members`, key =
  company_id, with a per-company sequence number); every worker runs a plain consumer (no group)
  over all its partitions into a `MemberReplica`, used for rule 1 and for enrichment lookups. The
  deciding worker applies its own writes at once (read-your-writes); other workers see them after
  replication -- an event arriving earlier than its member's profile simply waits (rule 1);
- each worker snapshots the aggregates of the partitions it owns to `<app>-partials` (key = the
  partition); every worker reads all of them, so `/aggregates` is the same whichever worker answers.

Replicas apply a member state only when its sequence number is newer, so an old record read late
never overwrites a newer local write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from streams.aggregates import members_section
from streams.enrich import Profile
from streams.store import NO_EPOCH

log = logging.getLogger(__name__)
_decode = msgspec.json.Decoder()


class MemberReplica:
    """Company id -> `{"s": "active"|"left", "profile": {...}, "seq": n, "left_at": epoch|None}`.

    The newest sequence number wins.
    """

    def __init__(self) -> None:
        self.members: dict[str, dict[str, Any]] = {}
        self.version = 0
        """Grows with every state taken (tells snapshots whether the members changed)."""
        self.counts = MemberCounts()
        """The active members' profile counts, kept as members change (`members_section`)."""

    def apply(self, company_id: str, member: dict[str, Any]) -> None:
        """Take `member` unless a newer (or the same) state of the company is already known."""
        current = self.members.get(company_id)
        if current is None or member["seq"] > current["seq"]:
            if current is not None and current["s"] == "active":
                self.counts.add(current["profile"], -1)
            if member["s"] == "active":
                self.counts.add(member["profile"], 1)
            self.members[company_id] = member
            self.version += 1

    def members_section(self) -> dict[str, Any]:
        """`streams.aggregates.render_members` of the active profiles, from the running counts."""
        return self.counts.section()

    def knows(self, company_id: str) -> bool:
        """Whether any state of the company was seen (active or not)."""
        return company_id in self.members

    def active_profile(self, company_id: str, at: datetime | None = None) -> Profile | None:
        """The profile of `company_id` if it is an active member -- or, with `at`, was one at `at`.

        Events are judged by their own time against a departure: an order that happened before its
        customer left is still valid when it is processed after the `member.left`.
        """
        member = self.members.get(company_id)
        if member is None:
            return None
        if member["s"] != "active" and (at is None or at.timestamp() > (member.get("left_at") or 0)):
            return None
        profile: Profile = member["profile"]
        return profile

    def active_profiles(self) -> list[Profile]:
        """Profiles of all active members."""
        return [m["profile"] for m in self.members.values() if m["s"] == "active"]


class MemberCounts:
    """Counts of active members by each profile field, updated member by member."""

    FIELDS = ("region_code", "status", "sector", "size")

    def __init__(self) -> None:
        self.total = 0
        self.by: dict[str, Counter[str]] = {name: Counter() for name in self.FIELDS}
        self.corporations: Counter[str] = Counter()

    def add(self, profile: Profile, sign: int) -> None:
        self.total += sign
        for name, counter in self.by.items():
            counter[str(profile.get(name))] += sign
        self.corporations[str(profile.get("state_corporation") or "none")] += sign

    def section(self) -> dict[str, Any]:
        return members_section(
            self.total, {name: +counter for name, counter in self.by.items()}, +self.corporations
        )


class PartialsReplica:
    """Partition -> its latest aggregate entries, as last published by the partition's owner.

    Each snapshot carries its writer's epoch on the partition (`streams.store`: the offset of its
    changelog claim); one of an older epoch than the snapshot taken -- a zombie's, published after
    its successor's -- is not taken, and is remembered in `stale_writes` so that the owner publishes
    its own again (compaction may leave only the zombie's record in the topic)."""

    def __init__(self) -> None:
        self.partials: dict[int, Mapping[str, Any]] = {}
        self.epochs: dict[int, int] = {}
        self.version = 0
        """Grows with every snapshot taken."""
        self.last_written: dict[int, int] = {}
        """Partition -> the epoch of the last snapshot read, taken or not."""

    def apply(self, partition: int, entries: Mapping[str, Any], epoch: int = NO_EPOCH) -> None:
        self.last_written[partition] = epoch
        if epoch < self.epochs.get(partition, NO_EPOCH):
            log.info("partition %d: snapshot of epoch %d after one of %d not taken", partition, epoch,
                     self.epochs[partition])
            return
        self.partials[partition] = entries
        self.epochs[partition] = epoch
        self.version += 1


async def follow_topics(
    bootstrap: str,
    handlers: Mapping[str, Callable[[bytes, bytes], None]],
    *,
    stopped: asyncio.Event,
    ready: asyncio.Event,
    options: Mapping[str, Any],
) -> None:
    """Read every partition of `handlers`' topics from the beginning, calling `handler(key, value)`.

    Sets `ready` once the end offsets seen at start-up are reached; runs until `stopped` is set.
    Tombstones (null values) are skipped. Uses read_committed, so it also works under exactly_once.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **options,
    )
    await consumer.start()
    try:
        partitions: list[TopicPartition] = []
        for topic in handlers:
            numbers = consumer.partitions_for_topic(topic)
            while not numbers:
                await consumer._client.force_metadata_update()
                numbers = consumer.partitions_for_topic(topic)
            partitions.extend(TopicPartition(topic, n) for n in sorted(numbers))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        targets = await consumer.end_offsets(partitions)
        while not stopped.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                handler = handlers[tp.topic]
                for message in messages:
                    if message.value is not None:
                        try:
                            handler(message.key or b"", message.value)
                        except (msgspec.DecodeError, KeyError, ValueError, TypeError):
                            log.exception("skipping unreadable replica record %s/%s", tp, message.offset)
            if not ready.is_set():
                positions = {tp: await consumer.position(tp) for tp in partitions}
                if all(positions[tp] >= targets[tp] for tp in partitions):
                    log.info("replicas caught up with %s", sorted(handlers))
                    ready.set()
    finally:
        await consumer.stop()


def member_handler(replica: MemberReplica) -> Callable[[bytes, bytes], None]:
    def handle(key: bytes, value: bytes) -> None:
        replica.apply(key.decode(), _decode.decode(value))

    return handle


def partials_handler(replica: PartialsReplica) -> Callable[[bytes, bytes], None]:
    def handle(key: bytes, value: bytes) -> None:
        snapshot = _decode.decode(value)
        if isinstance(snapshot, dict) and "entries" in snapshot:
            replica.apply(int(key.decode()), snapshot["entries"], int(snapshot.get("epoch", NO_EPOCH)))
        else:  # written before snapshots carried their epoch
            replica.apply(int(key.decode()), snapshot)

    return handle
