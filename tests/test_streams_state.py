"""Unit tests of the worker's write-back state, outputs and checkpoint order (no broker).

`FakeProducer` stands in for aiokafka's producer at its batch API only (`create_batch`,
`send_batch`, `send`), recording what was handed over in which order and resolving each
acknowledgement as the test says; the broker-level behaviour is covered by `test_streams_kafka.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.checkpoint import Checkpoint
from streams.outputs import DeliveryError, OutputWriter
from streams.store import PartitionStore, key_kind


def test_only_the_last_value_of_a_changed_key_is_written_and_fresh_deletions_cost_nothing() -> None:
    store = PartitionStore(3, {"m:old": {"s": "active"}, "r:gone": [1]})
    store["e:a"] = [1]
    store["e:a"] = [2]  # the last value wins
    store["r:x"] = ["parked"]
    del store["r:x"]  # parked and released between two checkpoints: nothing to write
    assert store.pop("r:gone") == [1]  # known to the changelog: a tombstone
    store["m:old"] = {"s": "left"}
    assert sorted(store.changed_keys()) == ["e:a", "m:old", "r:gone"]
    assert store.take_changes() == [
        (b"e:a", b"[2]"),
        (b"m:old", b'{"s":"left"}'),
        (b"r:gone", None),
    ]
    assert store.take_changes() == [] and store.pending == 0
    del store["e:a"]  # now in the changelog: deleting it writes a tombstone
    assert store.take_changes() == [(b"e:a", None)]


def test_held_decisions_are_written_first_and_their_deletions_last() -> None:
    """A changelog partition keeps a prefix of a checkpoint: any prefix that holds anything holds the
    new held entries, and an entry is deleted after its taking's other writes (`streams.outbox`)."""
    store = PartitionStore(0, {"r:mic.orders/0/4": ["parked"]})
    store["e:a"] = [1, "mic.orders/0/4", "recheck/0/9", "unknown_company"]
    store.pop("r:mic.orders/0/4")
    store["x:mic.orders/0/4"] = ["held"]
    store["c:0"] = [6.0, 1.0]
    written = [key for key, _ in store.take_changes()]
    assert written == [b"x:mic.orders/0/4", b"c:0", b"e:a", b"r:mic.orders/0/4"]
    store.pop("x:mic.orders/0/4")  # taken: its deletion after the queue it leaves
    store["w:o:1"] = ["mic.orders/0/5"]
    assert [key for key, _ in store.take_changes()] == [b"w:o:1", b"x:mic.orders/0/4"]


def test_a_store_rebuilt_from_its_changelog_equals_the_original() -> None:
    original = PartitionStore(0)
    replayed = PartitionStore(0)
    for step in range(3):
        original[f"e:{step}"] = [step, f"mic.orders/0/{step}"]
        original["c:0"] = [float(step), 0.0]
        if step:
            original.pop(f"e:{step - 1}")
        for key, value in original.take_changes():
            replayed.apply_changelog(key, value)
    expected = {"e:2": [2, "mic.orders/0/2"], "c:0": [2.0, 0.0]}
    assert dict(replayed.items()) == dict(original.items()) == expected
    replayed.apply_changelog(None, b"[1]")  # a record without a key is not ours: ignored
    assert len(replayed) == 2
    assert [key_kind(k) for k in ("e:x", "b|3", "plain")] == ["e", "b", "plain"]


@dataclass
class FakeBatch:
    limit: int
    records: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)

    def append(
        self, *, timestamp: Any, key: bytes | None, value: bytes | None, headers: Any = ()
    ) -> object | None:
        if len(self.records) >= self.limit or (value is not None and len(value) > 100):
            return None
        self.records.append((key, value))
        return object()


@dataclass
class Offset:
    offset: int


@dataclass
class FakeProducer:
    """aiokafka's batch API; acknowledgements resolve when `acknowledge` is called."""

    batch_limit: int = 2
    fail_topics: frozenset[str] = frozenset()
    handed: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = field(default_factory=list)
    waiting: list[tuple[asyncio.Future[Any], str, int]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    next_offset: dict[tuple[str, int], int] = field(default_factory=dict)

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_limit)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        return self._hand(topic, partition, batch.records)

    async def send(
        self, topic: str, value: bytes | None, key: bytes | None, partition: int, headers: Any = None
    ) -> Any:
        return self._hand(topic, partition, [(key, value)])

    def _hand(self, topic: str, partition: int, records: list[Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.handed.append((topic, partition, list(records)))
        self.waiting.append((future, topic, len(records)))
        self.events.append(f"handed {topic}")
        base = self.next_offset.get((topic, partition), 0)
        self.next_offset[(topic, partition)] = base + len(records)
        future.base = base  # type: ignore[attr-defined]
        return future

    def acknowledge(self) -> None:
        for future, topic, _ in self.waiting:
            if not future.done():
                if topic in self.fail_topics:
                    future.set_exception(RuntimeError(f"{topic}: not leader"))
                else:
                    future.set_result(Offset(future.base))  # type: ignore[attr-defined]
                self.events.append(f"acked {topic}")
        self.waiting = []


async def _acknowledging(producer: FakeProducer, until: asyncio.Future[Any]) -> None:
    """The broker: acknowledge whatever was handed over, until the operation under test ended."""
    while not until.done():
        producer.acknowledge()
        await asyncio.sleep(0)


def test_outputs_go_in_batches_per_partition_and_oversized_messages_alone() -> None:
    async def scenario() -> OutputWriter:
        producer = FakeProducer(batch_limit=2)
        counted: list[tuple[str, int]] = []
        writer = OutputWriter(producer, counted=lambda topic, n: counted.append((topic, n)))
        for i in range(3):
            writer.append("enriched", 1, b"k", b"v%d" % i)
        writer.append("enriched", 2, b"k", b"w")
        writer.append("deadletter", 1, b"k", b"x" * 500)  # larger than a whole batch
        assert writer.unsubmitted == 5
        await writer.submit()
        assert writer.unsubmitted == 0
        assert sorted((t, p, len(r)) for t, p, r in producer.handed) == [
            ("deadletter", 1, 1),
            ("enriched", 1, 1),
            ("enriched", 1, 2),
            ("enriched", 2, 1),
        ]
        assert sum(n for _, n in counted) == 5
        producer.acknowledge()
        await writer.wait()
        assert writer.ends == {("enriched", 1): 3, ("enriched", 2): 1, ("deadletter", 1): 1}
        return writer

    asyncio.run(scenario())


def test_a_checkpoint_acknowledges_outputs_then_state_then_commits() -> None:
    async def scenario() -> None:
        producer = FakeProducer(batch_limit=10)
        writer = OutputWriter(producer)
        commits: list[Mapping[Any, int]] = []

        async def commit(offsets: Mapping[Any, int]) -> bool:
            producer.events.append("commit")
            commits.append(dict(offsets))
            return True

        checkpoint = Checkpoint(writer, "changelog", commit, interval_s=1.0)
        store = PartitionStore(4)
        writer.append("enriched", 4, b"k", b"row")
        store["e:1"] = ["decided"]
        checkpoint.decided(("mic.orders", 4), 11)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        broker = asyncio.ensure_future(_acknowledging(producer, done))
        result = await checkpoint.commit([store])
        done.set_result(None)
        await broker
        assert producer.events == [
            "handed enriched",
            "acked enriched",
            "handed changelog",
            "acked changelog",
            "commit",
        ]
        assert commits == [{("mic.orders", 4): 11}]
        assert (result.outputs, result.changelog_records, result.committed) == (1, 1, True)
        assert checkpoint.committed(("mic.orders", 4)) == 11 and checkpoint.uncommitted == {}
        producer.events.clear()
        again = await checkpoint.commit([store])  # nothing new: no records, no commit call
        assert again.offsets == {} and producer.events == []

    asyncio.run(scenario())


def test_held_decisions_go_out_after_the_state_that_holds_them_then_their_deletion_then_offsets() -> None:
    async def scenario() -> None:
        producer = FakeProducer(batch_limit=10)
        writer = OutputWriter(producer)

        async def commit(offsets: Mapping[Any, int]) -> bool:
            producer.events.append("commit")
            return True

        checkpoint = Checkpoint(writer, "changelog", commit)
        store = PartitionStore(2)
        store["x:mic.orders/2/5"] = ["held"]
        writer.append("enriched", 2, b"k", b"row")
        checkpoint.decided(("mic.orders", 2), 6)

        def send_held(stores: list[PartitionStore]) -> int:
            assert stores == [store]
            producer.events.append(f"held: {sorted(store)}")
            writer.append("deadletter", 2, b"k", b"letter")
            store.pop("x:mic.orders/2/5")
            return 1

        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        broker = asyncio.ensure_future(_acknowledging(producer, done))
        await checkpoint.commit([store], on_durable=send_held)
        assert producer.events == [
            "handed enriched",
            "acked enriched",
            "handed changelog",
            "acked changelog",
            "held: ['x:mic.orders/2/5']",
            "handed deadletter",
            "acked deadletter",
            "handed changelog",
            "acked changelog",
            "commit",
        ]
        assert producer.handed[-1] == ("changelog", 2, [(b"x:mic.orders/2/5", None)])
        producer.events.clear()
        await checkpoint.commit([store], on_durable=lambda stores: 0)  # nothing held: nothing more
        done.set_result(None)
        await broker
        assert producer.events == [] and store.pending == 0

    asyncio.run(scenario())


def test_an_unacknowledged_output_stops_the_checkpoint_before_state_and_offsets() -> None:
    async def scenario() -> None:
        producer = FakeProducer(fail_topics=frozenset({"enriched"}))
        writer = OutputWriter(producer)
        committed: list[Any] = []

        async def commit(offsets: Mapping[Any, int]) -> bool:
            committed.append(offsets)
            return True

        checkpoint = Checkpoint(writer, "changelog", commit)
        store = PartitionStore(0)
        store["e:1"] = ["decided"]
        writer.append("enriched", 0, b"k", b"row")
        checkpoint.decided(("mic.orders", 0), 5)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        broker = asyncio.ensure_future(_acknowledging(producer, done))
        with pytest.raises(DeliveryError, match="not leader"):
            await checkpoint.commit([store])
        done.set_result(None)
        await broker
        assert committed == [] and checkpoint.committed(("mic.orders", 0)) is None
        assert [topic for topic, _, _ in producer.handed] == ["enriched"]  # no state was written
        assert store.pending == 1

    asyncio.run(scenario())


def test_a_commit_refused_by_a_rebalance_leaves_the_offsets_uncommitted() -> None:
    async def scenario() -> None:
        producer = FakeProducer()
        writer = OutputWriter(producer)

        async def rebalanced(offsets: Mapping[Any, int]) -> bool:
            return False

        checkpoint = Checkpoint(writer, "changelog", rebalanced)
        checkpoint.decided(("mic.orders", 1), 7)
        result = await checkpoint.commit([])
        assert not result.committed and checkpoint.uncommitted == {("mic.orders", 1): 7}
        checkpoint.forget([("mic.orders", 1)])  # revoked: the new owner re-reads from the last commit
        assert checkpoint.uncommitted == {}

    asyncio.run(scenario())


def test_trace_names_the_decision_the_dropped_copies_and_a_parked_record() -> None:
    from streams_fixtures import CUSTOMER, STRANGER, event, joined, order_story, wire

    from mic_pipeline.config import Settings
    from mic_pipeline.health import Health
    from schemas.events import MemberUpdated
    from streams.partitions import Partitions
    from streams.records import Position, SourceRecord
    from streams.replica import MemberReplica
    from streams.settings import StreamSettings

    settings = StreamSettings(pipeline=Settings(), app_id="trace-test", member_wait_s=60)
    async def no_claims(partitions: list[int]) -> dict[int, int]:
        raise AssertionError("nothing is loaded here")

    partitions = Partitions(settings, MemberReplica(), Health("streams"), no_claims)
    runtime = partitions._runtime_for(PartitionStore(2), 0)
    partitions.runtimes[2] = runtime

    def feed(topic: str, offset: int, value: bytes) -> None:
        runtime.processor.process(SourceRecord(topic, 2, offset, b"k", value), Position(topic, 2, offset))

    member = joined(CUSTOMER)
    feed("mic.membership", 0, wire(member))
    feed("mic.membership", 1, wire(member))  # a producer retry: dropped as a duplicate
    feed("mic.membership", 2, wire(member))
    orphan = event(STRANGER, MemberUpdated(size="large"))
    feed("mic.membership", 3, wire(orphan))  # waits for its member
    placed = order_story(CUSTOMER, CUSTOMER, "O-1")[0]
    [accepted] = partitions.trace(member.event_id)
    assert accepted == {
        "partition": 2,
        "decision": "ok",
        "origin": "mic.membership/2/0",
        "decided_at": "mic.membership/2/0",
        "event_day": "2020-09-24",
        "duplicates": ["mic.membership/2/1", "mic.membership/2/2"],
        "held": False,
    }
    [parked] = partitions.trace(orphan.event_id)
    assert parked["decision"] == "parked" and parked["origin"] == "mic.membership/2/3"
    assert parked["waiting_for"] == [STRANGER] and parked["expires_in_s"] == 60.0
    assert partitions.trace(placed.event_id) == []  # never seen
