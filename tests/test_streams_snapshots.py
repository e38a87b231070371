"""Snapshots and the worker's graceful stop: a timer tick racing the stop must not fail it.

Found by a rebalance storm on three brokers: the worker owning partition 0 exited 1 on SIGTERM with
`ProducerClosed` raised by the snapshot timer, which sent after `StreamWorker.stop` closed the
producer. The worker here is a stand-in with the few attributes `Snapshots` reads.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import ProducerClosed

from streams.replica import PartialsReplica, partials_handler
from streams.snapshots import Snapshots


class _Tallies:
    def version(self, partition: int) -> int:
        return 1

    def partial(self, partition: int) -> list[Any]:
        return []


class _Producer:
    """Records sends; `closing` runs before a send fails as a closed producer would."""

    def __init__(self, closing: Any = None) -> None:
        self.sent: list[str] = []
        self.values: list[bytes] = []
        self.closing = closing

    async def send(self, topic: str, *, value: bytes, **_: Any) -> None:
        if self.closing is not None:
            self.closing()
            raise ProducerClosed()
        self.sent.append(topic)
        self.values.append(value)


def _worker(producer: _Producer, partials: PartialsReplica | None = None) -> Any:
    runtime = SimpleNamespace(processor=SimpleNamespace(tallies=_Tallies()), store=SimpleNamespace(epoch=40))
    return SimpleNamespace(
        producer=producer,
        stopped=asyncio.Event(),
        owned=lambda: {3: runtime},
        settings=SimpleNamespace(partials_topic="app-partials"),
        members=SimpleNamespace(version=0),
        partials=partials or PartialsReplica(),
    )


def test_a_running_worker_publishes_its_changed_partials() -> None:
    producer = _Producer()
    asyncio.run(Snapshots(_worker(producer), "mic.aggregates").publish())
    assert producer.sent == ["app-partials"]


def test_no_snapshot_is_sent_once_the_worker_stops() -> None:
    producer = _Producer()
    worker = _worker(producer)
    worker.stopped.set()
    asyncio.run(Snapshots(worker, "mic.aggregates").publish())
    assert producer.sent == []


def test_a_snapshot_racing_the_stop_is_skipped_not_raised() -> None:
    worker = _worker(_Producer())
    worker.producer.closing = worker.stopped.set  # the stop closes the producer mid-snapshot
    asyncio.run(Snapshots(worker, "mic.aggregates").publish())
    assert worker.stopped.is_set()


def test_a_closed_producer_while_running_is_still_an_error() -> None:
    worker = _worker(_Producer(closing=lambda: None))
    with pytest.raises(ProducerClosed):
        asyncio.run(Snapshots(worker, "mic.aggregates").publish())


def test_a_zombies_late_snapshot_is_not_taken_and_the_owner_publishes_its_own_again() -> None:
    """A worker frozen past its session timeout publishes the partial of a partition its successor
    owns now, after the successor's: replicas keep the successor's (newer epoch: its changelog
    claim), and the successor, reading the zombie's record, publishes again -- in a compacted topic
    the zombie's record may otherwise be the only one left."""
    replica = PartialsReplica()
    handle = partials_handler(replica)
    producer = _Producer()
    owner = Snapshots(_worker(producer, replica), "mic.aggregates")

    async def scenario() -> None:
        await owner.publish()
        assert producer.values == [b'{"epoch":40,"entries":[]}']
        handle(b"3", producer.values[-1])  # read back
        owner._next_at = 0.0
        await owner.publish()
        assert len(producer.values) == 1, "nothing changed: nothing published"
        handle(b"3", b'{"epoch":12,"entries":[["zombie"]]}')  # the zombie's, after ours
        assert replica.partials[3] == [] and replica.epochs[3] == 40, "the older epoch was taken"
        owner._next_at = 0.0
        await owner.publish()
        assert producer.values[1:] == [b'{"epoch":40,"entries":[]}'], "the owner did not publish again"
        handle(b"3", producer.values[-1])
        owner._next_at = 0.0
        await owner.publish()
        assert len(producer.values) == 2

    asyncio.run(scenario())
    handle(b"4", b'[["legacy"]]')  # a snapshot written before epochs: taken as the oldest epoch
    assert replica.partials[4] == [["legacy"]]
    handle(b"4", b'{"epoch":0,"entries":[]}')
    assert replica.partials[4] == []
