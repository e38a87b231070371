"""Commit only after every effect of the records being committed is acknowledged by the broker.

faust commits an input offset right after `Producer.flush()`, which calls `ProducerBuffer.flush`
(table changelog writes queued by `send_soon`) and then aiokafka's `flush`. Both leave holes:

- `ProducerBuffer.flush` gives up after 0.1 s without progress, and even its complete drain only
  waits until the buffer's *queue* is empty -- the message its sender task has just taken from the
  queue may still be on its way into aiokafka's accumulator (suspended in `producer.send`), so
  aiokafka's `flush` does not wait for it either;
- a send that fails (its future holds an exception) is only logged by faust; the offset is
  committed anyway.

Either way a kill -9 right after the commit lost a changelog write (a decision, a `w:` queue
update) whose input offset was already committed: the waiting record that carried an event was
consumed and committed, while the state still listed the event at the head of its entity's queue.

`DeliveryTracker` records the future of every message produced for a record -- changelog writes
(`ProducerBuffer.put`) and the agents' own sends -- and `drain` waits until each is acknowledged,
raising the first delivery error from faust's commit, which then does not happen (the records are
processed again after a restart or rebalance).

Acknowledging is explicit too (`for_each_acked`). faust's stream acknowledges an event in the
`finally` of its iterator, which also runs when the agent is cancelled in the middle of the event:
at a graceful stop faust cancels the agents and then commits, so an event whose outputs were not
yet handed to the producer was committed past -- lost (seen on the broker: 2 valid events produced
just before a worker's SIGTERM were neither enriched nor dead-lettered). Agents iterate a `noack()`
stream and acknowledge an event only after `handle` returned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

DRAIN_POLL_S = 0.1
"""How often `drain` re-checks whether the producer is still running while it waits."""


class DeliveryError(RuntimeError):
    """A message produced for a record was not delivered: its input offset must not be committed."""


class DeliveryTracker:
    """Futures of produced messages not yet acknowledged by the broker."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()
        self._failed: list[BaseException] = []

    def track(self, future: asyncio.Future[Any]) -> None:
        """Remember `future` until it is done; a failure is kept for the next `drain`."""
        if future.done():
            self._settled(future)
            return
        self._pending.add(future)
        future.add_done_callback(self._settled)

    def _settled(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            self._failed.append(asyncio.CancelledError("produce cancelled"))
        elif future.exception() is not None:
            exc = future.exception()
            assert exc is not None
            self._failed.append(exc)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def drain(self, producing: Callable[[], bool]) -> None:
        """Wait until every message tracked so far is delivered; raise `DeliveryError` if one failed.

        Messages tracked while waiting belong to records acknowledged after the offsets being
        committed were chosen, so they are left to the next drain (else a busy worker never commits).

        `producing()` says whether the producer still runs: waiting on a stopped producer would
        never end, so that is an error too.
        """
        await asyncio.sleep(0)  # let done-callbacks of futures settled just now record their outcome
        waiting = [future for future in self._pending if not future.done()]
        if waiting:
            # one callback per future for the whole drain (asyncio.wait in a polling loop would
            # add and remove one per future on every poll: 9% of the worker's CPU when profiled)
            remaining = [len(waiting)]
            settled = asyncio.Event()

            def one_settled(_: asyncio.Future[Any]) -> None:
                remaining[0] -= 1
                if not remaining[0]:
                    settled.set()

            for future in waiting:
                future.add_done_callback(one_settled)
            try:
                while not settled.is_set():
                    self._raise_failures()
                    if not producing():
                        raise DeliveryError(f"producer stopped with {remaining[0]} messages undelivered")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(settled.wait(), DRAIN_POLL_S)
            finally:
                for future in waiting:
                    future.remove_done_callback(one_settled)
        self._raise_failures()

    def _raise_failures(self) -> None:
        if self._failed:
            first = self._failed[0]
            self._failed.clear()
            raise DeliveryError(f"a message was not delivered: {first!r}") from first


async def for_each_acked(stream: Any, handle: Callable[[Any], Awaitable[bool]]) -> None:
    """Run `handle` on every event of the faust `stream`; acknowledge an event only once `handle`
    returned True for it (False: not processed, `handle` released it). An event whose `handle`
    raised or was cancelled stays unacknowledged, so its offset is never committed and it is
    processed again after a restart or rebalance."""
    manual = stream.noack()
    async for event in manual.events():
        if await handle(event):
            await manual.ack(event)


TRACKER = DeliveryTracker()
"""The worker process's tracker (one faust app per process)."""


def install(tracker: DeliveryTracker = TRACKER) -> None:
    """Make faust's producer buffer track its messages and drain them completely on flush."""
    from faust.transport.producer import ProducerBuffer

    if getattr(ProducerBuffer, "_mic_tracked", False):
        return
    original_put = ProducerBuffer.put

    def put(self: Any, fut: Any) -> None:
        tracker.track(fut)
        original_put(self, fut)

    async def flush(self: Any) -> None:
        await tracker.drain(lambda: self.state == "running" or not self.size)

    ProducerBuffer.put = put  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]
    ProducerBuffer._mic_tracked = True  # type: ignore[attr-defined]
