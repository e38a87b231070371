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
        self.closing = closing

    async def send(self, topic: str, **_: Any) -> None:
        if self.closing is not None:
            self.closing()
            raise ProducerClosed()
        self.sent.append(topic)


def _worker(producer: _Producer) -> Any:
    runtime = SimpleNamespace(processor=SimpleNamespace(tallies=_Tallies()))
    return SimpleNamespace(
        producer=producer,
        stopped=asyncio.Event(),
        owned=lambda: {3: runtime},
        settings=SimpleNamespace(partials_topic="app-partials"),
        members=SimpleNamespace(version=0),
        partials=SimpleNamespace(version=0, partials={}),
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
