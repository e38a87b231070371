"""Unit tests of `streams.delivery`: a commit waits for every message produced before it, no longer;
an event is acknowledged only once handled."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

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


def test_an_event_cancelled_while_being_handled_is_never_acknowledged() -> None:
    """faust acknowledges the event an agent is cancelled in (its iterator's `finally`), so a
    graceful stop committed past it; `for_each_acked` acknowledges only handled events."""
    import faust

    from streams.delivery import for_each_acked

    async def handled_then_cancelled(explicit: bool) -> list[tuple[bytes, bool]]:
        app = faust.App("ack-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
        app.flow_control.resume()  # a started worker's state; nothing here contacts a broker
        channel = app.channel()
        stream = app.stream(channel)
        seen: list[Any] = []
        second_started = asyncio.Event()

        async def handle(event: Any) -> bool:
            seen.append(event)
            if len(seen) == 2:
                second_started.set()
                await asyncio.sleep(30)  # still sending its outputs when the worker stops
            return True

        async def implicit() -> None:
            async for event in stream.events():
                await handle(event)

        for value in (b"first", b"second", b"third"):
            await channel.send(key=b"k", value=value)
        agent = asyncio.ensure_future(for_each_acked(stream, handle) if explicit else implicit())
        await asyncio.wait_for(second_started.wait(), 5)
        agent.cancel()
        with pytest.raises(asyncio.CancelledError):
            await agent
        del agent
        gc.collect()  # finalises the abandoned stream iterator, as the worker's shutdown does
        for _ in range(10):
            await asyncio.sleep(0)
        return [(event.value, event.message.acked) for event in seen]

    assert asyncio.run(handled_then_cancelled(explicit=False)) == [(b"first", True), (b"second", True)]
    assert asyncio.run(handled_then_cancelled(explicit=True)) == [(b"first", True), (b"second", False)]
