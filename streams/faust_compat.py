"""Everything the stream worker changes in faust-streaming and aiokafka, in one place.

The worker is a faust app: faust runs the worker's life cycle, the consumer group (its assignor
keeps partition `p` of every input topic on one worker), rebalances, the consumer thread, flow
control, timers and the web server. Below faust's consumer the worker changes two things, each by
subclassing (nothing global is patched), and only for the versions it was tested with:

1. **Batch delivery** (`BatchConsumer`). faust hands every fetched record to its conductor one at
   a time: `Consumer._drain_messages` awaits `wait_first(callback(message), suspend_flow.wait())`
   for each record (two tasks and an `asyncio.wait` per record), the conductor decodes it into an
   `Event` and queues it, and the agent's stream iterator takes it off the queue and acknowledges
   it. Measured on this machine against the same 100,000-record backlog: a faust agent that only
   decodes read ~3-17k records/s (load-dependent), the batch drain below 45-63k records/s. Every
   table changelog write and every `Topic.send` then passes faust's `ProducerBuffer` (~140 us per
   message, `../shared/ANCHORS.md`). So the worker receives each fetched batch per partition
   (`BatchHandler.on_batch`), decides it in offset order, hands outputs to an aiokafka producer
   directly (`streams.outputs`) and commits its own offsets after every output and state write is
   acknowledged (`streams.checkpoint`). Records fetched while the flow is stopped (a rebalance) are
   dropped and the partitions sought back to their committed offsets, exactly as faust's
   `Consumer.getmany` does.

2. **Never-committed partitions are rewound** (`SeekingConsumerThread.seek_to_committed`). faust
   drops fetched-but-unprocessed records at every rebalance and relies on a seek to the committed
   offsets to read them again (`Consumer.perform_seek`); aiokafka's `seek_to_committed` skips
   partitions whose committed offset is None or 0 (`if offset and offset > 0`), so such a
   partition kept the position its fetcher had reached, past the dropped records: they were never
   processed (seen on the broker in 2 of 7 runs of the kill -9 scenario before this fix). The
   subclass seeks those partitions to their log start offset and reports every position it set to
   the worker's offset-order guard (`streams.ordering`).

Earlier versions of the worker also patched faust's acknowledgements and commit guard
(`Consumer.ack`, `Consumer._new_offset`) and its producer buffer; with batch delivery none of those
paths is used any more, so those patches are gone.

`check_versions` refuses versions these classes were not tested with: they override private
methods (`Consumer._drain_messages`, `_wait_next_records`, `perform_seek`, `_commit`,
`AIOKafkaConsumerThread.seek_to_committed`) whose behaviour changes between releases.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from importlib.metadata import version
from typing import Any, Protocol

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 0.2
"""How long one fetch waits for records; `BatchHandler.on_idle` runs after an empty one."""
TESTED_VERSIONS = {"faust-streaming": ("0.15.3",), "aiokafka": ("0.14.0",)}
"""Distribution -> the versions the classes below were tested with."""


class UnsupportedVersion(RuntimeError):
    """faust-streaming or aiokafka is not a version this module was tested with."""


def check_versions(installed: Mapping[str, str] | None = None) -> None:
    """Raise `UnsupportedVersion` naming every package whose installed version was not tested."""
    found = installed if installed is not None else {name: version(name) for name in TESTED_VERSIONS}
    wrong = [
        f"{name} {found.get(name, 'missing')} (tested: {', '.join(tested)})"
        for name, tested in TESTED_VERSIONS.items()
        if found.get(name) not in tested
    ]
    if wrong:
        raise UnsupportedVersion(
            "the stream worker subclasses private faust/aiokafka internals and refuses untested "
            f"versions: {'; '.join(wrong)} -- install the tested versions (pyproject.toml pins them) "
            "or re-test streams/faust_compat.py against the new ones"
        )


class BatchHandler(Protocol):
    """What the batch consumer delivers to (the stream worker)."""

    async def on_batch(self, records: Mapping[Any, list[Any]], generation: int) -> None:
        """Decide fetched records (aiokafka `ConsumerRecord`s per faust `TP`), fetched in
        consumer generation `generation`; return once their outputs are handed to the producer."""
        ...

    async def on_idle(self) -> None:
        """A fetch returned nothing (called at most every fetch timeout)."""
        ...

    def sought(self, tp: Any, offset: int) -> None:
        """The consumer was positioned at `offset` for `tp` (the next record to decide)."""
        ...


async def seek_to_committed_or_start(
    consumer: Any, topics: Collection[str], positions: dict[Any, int] | None = None
) -> Mapping[Any, int]:
    """aiokafka's `seek_to_committed` for every assigned partition, then the log start for those of
    `topics` without a committed offset (None or 0); returns the committed offsets.

    `positions`, if given, receives the offset each partition of `topics` was positioned at.

    A rebalance can take partitions away between aiokafka's awaits (it then raises
    `IllegalStateError: No current assignment for partition`, or asserts that nothing is assigned):
    that is not an error here -- the seek is abandoned (nothing reported) and faust seeks again
    once the rebalance completes. Seen crashing the second of two workers in ~1 of 6 starts.
    """
    from aiokafka.errors import IllegalStateError

    try:
        committed: Mapping[Any, int] = await consumer.seek_to_committed()
        ours = [tp for tp in committed if tp.topic in topics]
        never = [tp for tp in ours if not committed[tp]]
        starts: Mapping[Any, int] = await consumer.beginning_offsets(never) if never else {}
        for tp in never:
            consumer.seek(tp, starts[tp])
    except (IllegalStateError, AssertionError) as revoked:
        log.info("partitions revoked while seeking to the committed offsets (%s); sought again after the "
                 "rebalance", revoked)
        return {}
    if positions is not None:
        positions.update({tp: committed[tp] or starts[tp] for tp in ours})
    return committed


async def commit_offsets(app: Any, offsets: Mapping[Any, int]) -> bool:
    """Commit `offsets` (the next offset to read, per partition) through faust's consumer thread.

    False when the group has rebalanced meanwhile (the partitions' new owners re-read from the
    last commit); faust crashes the app on any other commit error.
    """
    if not offsets:
        return True
    committed: bool = await app.consumer._commit(dict(offsets))
    return committed


def batch_app_class() -> type[Any]:
    """The faust `App` subclass whose consumer delivers batches (imports faust: call at run time)."""
    import faust
    from faust.transport.drivers import aiokafka as driver

    class SeekingConsumerThread(driver.AIOKafkaConsumerThread):
        """Fix 2 of the module doc: never-committed partitions are rewound to their log start."""

        async def seek_to_committed(self) -> Mapping[Any, int]:
            consumer = self._ensure_consumer()
            app: Any = self.consumer.app
            positions: dict[Any, int] = {}
            result: Mapping[Any, int] = await self.call_thread(
                seek_to_committed_or_start, consumer, app.processed_topics, positions
            )
            for tp, offset in positions.items():  # aiokafka's TopicPartition == faust's TP (tuples)
                app.batch_handler.sought(tp, offset)
            return result

    class BatchConsumer(driver.Consumer):
        """Fix 1 of the module doc: fetched records go to `app.batch_handler` in batches."""

        def _new_consumer_thread(self) -> Any:
            return SeekingConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def seek(self, partition: Any, offset: int) -> None:
            await super().seek(partition, offset)
            app: Any = self.app
            app.batch_handler.sought(partition, offset)

        def verify_event_path(self, now: float, tp: Any) -> None:
            """faust's livelock check reads its own stream statistics, which batch delivery does
            not feed (it would warn about every partition); the worker judges its progress itself
            (`StreamWorker.health`)."""

        async def _drain_messages(self, fetcher: Any) -> None:  # the Fetcher service's loop
            app: Any = self.app
            handler: BatchHandler = app.batch_handler
            stopping = self._stopped.is_set
            fetcher_stopping = fetcher._stopped.is_set
            try:
                while not (stopping() or fetcher_stopping()):
                    records, _ = await self._wait_next_records(FETCH_TIMEOUT_S)
                    if records is None or self.should_stop:
                        return
                    if not self.flow_active:  # as faust's getmany: drop them, re-read from committed
                        await self.perform_seek()
                        continue
                    if records:
                        await handler.on_batch(records, app.consumer_generation_id)
                    else:
                        await handler.on_idle()
            except self.consumer_stopped_errors:
                if self.transport.app.should_stop:
                    log.info("broker stopped the consumer while shutting down")
                    return
                raise

    class BatchTransport(driver.Transport):
        Consumer = BatchConsumer

    class BatchApp(faust.App):
        """A faust app whose consumer delivers batches to `batch_handler` (set before starting)."""

        batch_handler: BatchHandler
        processed_topics: frozenset[str] = frozenset()
        """Topics whose never-committed partitions are rewound to their start on a seek."""

        def _new_transport(self) -> Any:
            return BatchTransport(self.conf.broker_consumer, self)

    return BatchApp
