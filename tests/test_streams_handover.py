"""A graceful stop must not commit decisions whose outputs were never handed to the producer.

Found by `test_streams_kafka.py::test_kill_restart_and_second_worker_lose_and_double_count_nothing`
(about 1 run in 13): after the restarted worker was stopped with SIGTERM and its partitions moved to
the second worker, `mic.orders.enriched` held an `order.cancelled` whose `order.placed` was in no
output at all, while the lifecycle state that accepted the cancellation knew the order as placed.

The interleaving: faust's `App.on_stop` stops the consumer first -- `Fetcher.stop` cancels the task
running `StreamWorker.on_batch` wherever it is suspended -- and only then sends `on_before_shutdown`,
whose `StreamWorker.stop` runs the last checkpoint. `on_batch` suspends mostly in
`OutputWriter.submit`, inside aiokafka's `send_batch` (`add_batch` waits there while an earlier
batch of the same topic-partition is not drained yet). `submit` had already taken every open batch
out of the writer, so the cancellation dropped the batches not handed over yet; the records' offsets
stayed decided and their state stayed in the store, and the last checkpoint then wrote that state to
the changelog and committed the offsets. The successor recovered "placed" from the changelog and
read on after the committed offset: the cancellation was accepted, the placed row never existed.

A second way to the same end: a `DeliveryError` crashes the app, whose stop runs the last checkpoint
too -- and `OutputWriter.wait` had forgotten the failed acknowledgements, so that checkpoint wrote
the state and committed the offsets past the outputs that failed.

The worker here is the real `StreamWorker` (real processor, store, merge, checkpoint and writer)
over a stand-in faust app and aiokafka producer; no broker.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import pytest
from streams_fixtures import CUSTOMER, MAKER_MOSCOW, event, joined, order_story, wire

from mic_pipeline.config import Settings
from schemas.events import OrderCancelled
from schemas.topics import Family
from streams.checkpoint import Checkpoint
from streams.outputs import DeliveryError, OutputWriter
from streams.processor import EventProcessor
from streams.records import Position, SourceRecord
from streams.replica import MemberReplica, member_handler
from streams.settings import StreamSettings
from streams.store import PartitionStore
from streams.worker import StreamWorker

PARTITIONS = 2


class TP(NamedTuple):
    """faust's `TP`: a (topic, partition) tuple with names."""

    topic: str
    partition: int


@dataclass
class Message:
    """The fields of an aiokafka `ConsumerRecord` the worker reads."""

    offset: int
    key: bytes | None
    value: bytes
    timestamp: int
    headers: tuple[Any, ...] = ()


@dataclass
class Batch:
    records: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes | None, headers: Any = ()) -> object:
        self.records.append((key, value))
        return object()


@dataclass
class Acknowledged:
    offset: int


@dataclass
class Producer:
    """aiokafka's producer at the calls the worker makes; every message is acknowledged at once
    (or fails, for `failing` topics). While `gate` is set and closed, `send_batch` waits, as
    aiokafka's `add_batch` does while an earlier batch of the partition is not drained yet."""

    handed: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = field(default_factory=list)
    failing: frozenset[str] = frozenset()
    gate: asyncio.Event | None = None
    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: bool = False
    ends: dict[tuple[str, int], int] = field(default_factory=dict)

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if self.gate is not None and not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        return self._hand(topic, partition, batch.records)

    async def send(
        self, topic: str, value: bytes | None, key: bytes | None, partition: int, headers: Any = None
    ) -> Any:
        return self._hand(topic, partition, [(key, value)])

    async def stop(self) -> None:
        self.stopped = True

    def _hand(self, topic: str, partition: int, records: list[Any]) -> asyncio.Future[Any]:
        assert not self.stopped, "sent after the producer stopped"
        self.handed.append((topic, partition, list(records)))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if topic in self.failing:
            future.set_exception(RuntimeError(f"{topic}: not acknowledged"))
        else:
            base = self.ends.get((topic, partition), 0)
            self.ends[(topic, partition)] = base + len(records)
            future.set_result(Acknowledged(base))
        return future

    def values(self, topic: str) -> list[bytes | None]:
        return [value for t, _, records in self.handed if t == topic for _, value in records]


class Consumer:
    flow_active = True

    def highwater(self, tp: Any) -> int | None:
        return None

    async def seek(self, tp: Any, offset: int) -> None:
        raise AssertionError(f"no re-seek expected ({tp} to {offset})")

    def pause_partitions(self, tps: Any) -> None: ...

    def resume_partitions(self, tps: Any) -> None: ...


class App:
    """What the worker reads of the faust app; `commits` are the consumer group's commits."""

    def __init__(self) -> None:
        self.consumer = Consumer()
        self.consumer_generation_id = 1
        self.rebalancing = False
        self.commits: list[dict[Any, int]] = []
        self.crashed: list[BaseException] = []

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


def _worker(producer: Producer, app: App, *, commit_s: float) -> StreamWorker:
    """A running worker that owns partition 0 (recovered, ready) -- `start_producer` without Kafka."""
    settings = StreamSettings(pipeline=Settings(partitions=PARTITIONS), app_id="handover", member_wait_s=60)
    worker = StreamWorker(settings, app)
    worker.producer = producer
    topics = [*worker.enriched.values(), worker.deadletters, settings.members_topic, settings.changelog_topic]
    worker._widths.update(dict.fromkeys(topics, PARTITIONS))

    async def commit(offsets: Any) -> bool:
        app.commits.append(dict(offsets))
        return True

    worker.outputs = OutputWriter(producer)
    worker.checkpoint = Checkpoint(worker.outputs, settings.changelog_topic, commit, interval_s=commit_s)
    worker.partitions.runtimes[0] = worker.partitions._runtime_for(PartitionStore(0), 0)
    worker.ready.set()
    return worker


def _message(offset: int, value: bytes, at: int) -> Message:
    return Message(offset, CUSTOMER.encode(), value, at)


def _placed_and_cancelled() -> tuple[bytes, bytes, str]:
    placed = order_story(CUSTOMER, MAKER_MOSCOW, "ORD-aabdc9-0000734")[0]
    cancelled = event(CUSTOMER, OrderCancelled(order_id="ORD-aabdc9-0000734", reason="customer"), minutes=5)
    return wire(placed), wire(cancelled), placed.event_id


def _successor(producer: Producer, app: App, changelog: str, members: str) -> EventProcessor:
    """The worker the partition moves to: state rebuilt from the changelog, members replicated."""
    store = PartitionStore(0)
    for topic, partition, records in producer.handed:
        if topic == changelog and partition == 0:
            for key, value in records:
                store.apply_changelog(key, value)
    replica = MemberReplica()
    handle = member_handler(replica)
    for topic, _, records in producer.handed:
        if topic == members:
            for key, value in records:
                assert key is not None and value is not None
                handle(key, value)
    return EventProcessor(store, store, replica, member_wait_s=60, dedupe_days=7)


def test_a_stop_that_cancels_a_batch_mid_submit_still_writes_its_outputs_before_its_state() -> None:
    async def scenario() -> None:
        producer, app = Producer(), App()
        worker = _worker(producer, app, commit_s=0.0)  # every batch checkpoints: the member is durable
        membership, orders = TP("mic.membership", 0), TP("mic.orders", 0)
        await worker.on_batch({membership: [_message(0, wire(joined(CUSTOMER)), 1)]}, 1)
        assert app.commits == [{membership: 1}]
        placed, cancelled, placed_id = _placed_and_cancelled()

        assert worker.checkpoint is not None
        worker.checkpoint.interval_s = 3600.0  # the next batch is only handed to the producer
        producer.gate = asyncio.Event()
        fetcher = asyncio.ensure_future(worker.on_batch({orders: [_message(0, placed, 2)]}, 1))
        await producer.waiting.wait()  # suspended in send_batch, the placed row not handed yet
        fetcher.cancel()  # faust's App.on_stop -> _stop_consumer -> Fetcher.stop
        with pytest.raises(asyncio.CancelledError):
            await fetcher
        producer.gate.set()
        await worker.stop()  # on_before_shutdown: the last checkpoint, then the producer stops

        settings = worker.settings
        enriched = worker.enriched[Family.ORDER]
        state = dict(_successor(producer, app, settings.changelog_topic, settings.members_topic).state)
        offsets = {tp: offset for commit in app.commits for tp, offset in commit.items()}
        rows = [json.loads(value) for value in producer.values(enriched) if value is not None]
        assert offsets[orders] == 1 and state["o:" + CUSTOMER + ":ORD-aabdc9-0000734"]["s"] == "placed"
        assert [row["event_id"] for row in rows] == [placed_id], "state and offset durable, output lost"
        changelog_at = next(
            i
            for i, (topic, _, records) in enumerate(producer.handed)
            if topic == settings.changelog_topic and any(key and key.startswith(b"o:") for key, _ in records)
        )
        enriched_at = next(i for i, (topic, _, _) in enumerate(producer.handed) if topic == enriched)
        assert enriched_at < changelog_at  # the output was handed before the state that depends on it

        # the successor reads on from the committed offset: the cancellation finds the order placed
        successor = _successor(producer, app, settings.changelog_topic, settings.members_topic)
        record = SourceRecord("mic.orders", 0, 1, CUSTOMER.encode(), cancelled)
        outcome = successor.process(record, Position("mic.orders", 0, 1))
        assert not outcome.wait and not outcome.dead_letters and len(outcome.enriched) == 1

    asyncio.run(scenario())


def test_a_stop_after_a_delivery_failure_commits_nothing_past_the_failed_output() -> None:
    async def scenario() -> None:
        producer, app = Producer(), App()
        worker = _worker(producer, app, commit_s=0.0)
        orders = TP("mic.orders", 0)
        await worker.on_batch({TP("mic.membership", 0): [_message(0, wire(joined(CUSTOMER)), 1)]}, 1)
        committed = list(app.commits)
        placed, _, _ = _placed_and_cancelled()
        enriched = worker.enriched[Family.ORDER]
        producer.failing = frozenset({enriched})
        with pytest.raises(DeliveryError, match="not acknowledged"):
            await worker.on_batch({orders: [_message(0, placed, 2)]}, 1)
        assert len(app.crashed) == 1  # the app stops: faust then runs on_before_shutdown
        handed = len(producer.handed)
        await worker.stop()  # its last checkpoint fails again ("re-read from the last commit")
        assert app.commits == committed, "offsets committed past an output that was not acknowledged"
        assert [t for t, _, _ in producer.handed[handed:]] == [], "state written past a failed output"
        assert producer.stopped

    asyncio.run(scenario())


def test_a_cancelled_wait_keeps_waiting_for_the_same_acknowledgements() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        late: asyncio.Future[Any] = loop.create_future()

        class Slow(Producer):
            async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
                self.handed.append((topic, partition, list(batch.records)))
                return late

        writer = OutputWriter(Slow())
        writer.append("enriched", 0, b"k", b"row")
        await writer.submit()
        waiting = asyncio.ensure_future(writer.wait())
        await asyncio.sleep(0)
        waiting.cancel()  # a cancelled checkpoint
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not late.cancelled()  # the acknowledgement is still the producer's
        late.set_exception(RuntimeError("enriched: not acknowledged"))
        with pytest.raises(DeliveryError, match="1 of 1"):
            await writer.wait()  # the next checkpoint still waits for it, and sees it fail

    asyncio.run(scenario())


def test_messages_stay_appended_until_the_producer_takes_them() -> None:
    async def scenario() -> None:
        producer = Producer(gate=asyncio.Event())
        writer = OutputWriter(producer)
        for partition in (0, 1):
            writer.append("enriched", partition, b"k", b"row %d" % partition)
        writer.append("deadletter", 0, b"k", msgspec.json.encode({"reason": "x"}))
        submitting = asyncio.ensure_future(writer.submit())
        await producer.waiting.wait()
        submitting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await submitting
        assert writer.unsubmitted == 3 and producer.handed == []
        producer.gate.set()
        await writer.flush()
        assert sorted((t, p, r) for t, p, r in producer.handed) == [
            ("deadletter", 0, [(b"k", b'{"reason":"x"}')]),
            ("enriched", 0, [(b"k", b"row 0")]),
            ("enriched", 1, [(b"k", b"row 1")]),
        ]
        assert writer.unsubmitted == 0 and writer.ends == {
            ("enriched", 0): 1, ("enriched", 1): 1, ("deadletter", 0): 1
        }

    asyncio.run(scenario())
