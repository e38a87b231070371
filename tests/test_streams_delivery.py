"""Unit tests of `streams.delivery`: a commit waits for every message produced before it, no longer."""

from __future__ import annotations

import asyncio

import pytest

from streams.delivery import DeliveryError, DeliveryTracker


def test_drain_waits_for_messages_tracked_before_it_but_not_for_later_ones() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        tracker = DeliveryTracker()
        early: asyncio.Future[None] = loop.create_future()
        tracker.track(early)
        late: asyncio.Future[None] = loop.create_future()
        drained = asyncio.ensure_future(tracker.drain(lambda: True))
        await asyncio.sleep(0.01)
        tracker.track(late)  # produced for a record acknowledged after the commit's offsets were chosen
        assert not drained.done()
        early.set_result(None)
        await asyncio.wait_for(drained, 1.0)
        assert tracker.pending == 1
        late.set_result(None)
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
        assert tracker.pending == 0

    asyncio.run(scenario())


def test_a_failed_delivery_or_a_stopped_producer_prevents_the_commit() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        tracker = DeliveryTracker()
        failed: asyncio.Future[None] = loop.create_future()
        tracker.track(failed)
        failed.set_exception(ConnectionError("broker gone"))
        with pytest.raises(DeliveryError, match="broker gone"):
            await tracker.drain(lambda: True)
        await tracker.drain(lambda: True)  # reported once; nothing pending
        stuck: asyncio.Future[None] = loop.create_future()
        tracker.track(stuck)
        with pytest.raises(DeliveryError, match="producer stopped"):
            await tracker.drain(lambda: False)
        stuck.cancel()

    asyncio.run(scenario())
