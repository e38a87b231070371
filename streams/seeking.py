"""What faust re-reads and commits: never-committed partitions, holes at the head, skipped records.

faust re-positions its consumer with `Consumer.perform_seek()` after every rebalance (end of table
recovery) and whenever `getmany` finds the flow stopped: records it had fetched or queued but not
processed are dropped (`flow_control.clear()`, a generation change, a partition out of the active
set), and the seek brings the fetch position back to the committed offset so they are read again.
aiokafka's `seek_to_committed` only seeks partitions whose committed offset is above 0
(`if offset and offset > 0`). A partition that has never been committed (or is committed at 0)
keeps the position the fetcher had reached, past the dropped records; they are never processed,
and faust, whose own guard also ignores a committed offset of None, later commits past them.

Seen on the real broker (tests/test_streams_kafka.py, 2 of 7 runs before this fix): the first
worker started on a backlog, a rebalance cleared its queues before `mic.membership` partition 1
was ever committed, and every later worker found that partition at its end offset with nothing
read (`committed None`, position = end). The previous waiting-topic design lost parked records the
same way: the waiting topic of a killed worker had no commit yet (that design is gone).

Fix: after aiokafka's seek, partitions of the `topics` this app processes that have no committed
offset (None or 0) are sought to their log start offset. Changelog partitions are left alone:
table recovery positions them itself. Every position is reported to `streams.ordering`.

`install` also guards what faust commits on those topics: never past an unprocessed record at the
committed offset (`_guard_commits`), never past records faust skipped at a rebalance (`_guard_acks`).
All three patch faust-streaming 0.15 / aiokafka 0.14 internals (pinned in pyproject.toml).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from streams.ordering import ORDER

log = logging.getLogger(__name__)

_installed_for: set[str] = set()


async def seek_to_committed_or_start(
    consumer: Any, topics: Collection[str], positions: dict[Any, int] | None = None
) -> Mapping[Any, int]:
    """aiokafka's `seek_to_committed` for every assigned partition, then the log start for those of
    `topics` without a committed offset (None or 0); returns the committed offsets.

    `positions`, if given, receives the offset each partition of `topics` was positioned at.
    """
    committed: Mapping[Any, int] = await consumer.seek_to_committed()
    ours = [tp for tp in committed if tp.topic in topics]
    never = [tp for tp in ours if not committed[tp]]
    starts: Mapping[Any, int] = await consumer.beginning_offsets(never) if never else {}
    for tp in never:
        consumer.seek(tp, starts[tp])
    if positions is not None:
        positions.update({tp: committed[tp] or starts[tp] for tp in ours})
    return committed


def install(topics: Collection[str]) -> None:
    """Patch faust's aiokafka consumer thread so `seek_to_committed` also rewinds never-committed
    partitions of `topics`, and faust's consumer so it commits on them only offsets of processed
    records (call before the worker starts; topics add up over calls)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    _installed_for.update(topics)
    if getattr(AIOKafkaConsumerThread, "_mic_seek_fixed", False):
        return

    async def seek_to_committed(self: Any) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        positions: dict[Any, int] = {}
        result: Mapping[Any, int] = await self.call_thread(
            seek_to_committed_or_start, consumer, _installed_for, positions
        )
        for tp, offset in positions.items():  # aiokafka's TopicPartition == faust's TP (both tuples)
            ORDER.sought(tp, offset)
        return result

    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    AIOKafkaConsumerThread._mic_seek_fixed = True  # type: ignore[attr-defined]
    _guard_commits()
    _guard_acks()


def first_unprocessed(acked: Collection[int], committed: int | None) -> int | None:
    """The committed offset when records from it on were processed except it (a hole at the head)."""
    if not acked or committed is None or min(acked) <= committed:
        return None
    return committed


def _guard_commits() -> None:
    """Patch faust's `Consumer._new_offset` (the offset it is about to commit) so a record at the
    committed offset that was not processed is re-read once before anything past it is committed.

    faust's own guard lets the first acknowledged offset be one above the committed offset
    (`min(acked) - committed > 1`), so a single record dropped at the head after a seek is
    committed past. Seen on the broker after a partition moved to another worker: the record at
    its committed offset was not processed while the ones after it were (one run lost that event
    before this patch; with it, the hole was logged and re-read). The patch asks the group to
    rejoin (a rebalance seeks every partition to its committed offset again) instead of committing;
    if the same offset is still missing afterwards it is not a data record (a transaction marker)
    and faust's commit goes ahead.
    """
    from faust.transport.consumer import Consumer

    original = Consumer._new_offset
    rewound: dict[tuple[Any, int], int] = {}
    """(partition, missing offset) -> consumer generation when its re-read was requested."""

    def _new_offset(self: Any, tp: Any) -> int | None:
        if tp.topic in _installed_for:
            hole = first_unprocessed(self._acked[tp], self._committed_offset[tp])
            if hole is not None:
                generation = self.app.consumer_generation_id
                if (tp, hole) not in rewound:
                    rewound[(tp, hole)] = generation
                    log.warning("%s: offset %d was not processed; re-reading it (group rejoin)", tp, hole)
                    _request_rejoin(self)
                if rewound[(tp, hole)] == generation:  # no rebalance since the request: commit nothing
                    return None
        result: int | None = original(self, tp)
        return result

    Consumer._new_offset = _new_offset  # type: ignore[method-assign]


def ack_may_commit(message_generation: int | None, generation: int | None, flow_active: bool) -> bool:
    """Whether an acknowledgement may make a record's offset committable: not for a record fetched
    in an earlier consumer generation, nor while the flow is suspended (a rebalance is under way)."""
    return flow_active and message_generation == generation


def _guard_acks() -> None:
    """Patch faust's `Consumer.ack` so no offset becomes committable while a rebalance is under way
    (flow suspended) or for a record of an older consumer generation.

    At a rebalance faust clears the partition's acknowledged offsets before it commits
    (`wait_empty`), and its committed offset is unknown until the seek: an offset acknowledged in
    that window is committed without faust's hole checks, past records that may not have been
    processed (the pure-Python stream iterator even acknowledges the records it skips as
    "fetched before the rebalance"; the compiled one used here does not). Such acknowledgements
    now only release the message (nothing waits for it); the record is read again from the
    committed offset. An event that finished while a rebalance started is processed once more by
    the partition's next owner: a repeat, never a loss.
    """
    from faust.transport.consumer import Consumer

    original = Consumer.ack

    def ack(self: Any, message: Any) -> bool:
        app = self.app
        if message.topic in _installed_for and not ack_may_commit(
            message.generation_id, app.consumer_generation_id, app.flow_control.is_active()
        ):
            release_unprocessed(self, message)
            return False
        result: bool = original(self, message)
        return result

    Consumer.ack = ack  # type: ignore[method-assign]


def release_unprocessed(consumer: Any, message: Any) -> None:
    """Let faust forget `message` (nothing waits for it any more) without making its offset
    committable: it was not processed and is read again from the committed offset."""
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    with ack_lock:
        message.acked = True
        consumer._unacked_messages.discard(message)
    notify(consumer._waiting_for_ack)


def fetched_gap(consumer: Any, tp: Any, first: int, last: int) -> bool:
    """Whether offsets `first..last` of `tp` are a gap faust's fetcher saw between two records
    (transaction markers, compacted or deleted records): not records that were dropped."""
    tree = consumer._gap.get(tp)
    return bool(tree) and any(iv.begin <= first and iv.end > last for iv in tree.overlap(first, last + 1))


def _request_rejoin(consumer: Any) -> None:
    thread = consumer._thread
    coordinator = thread._ensure_consumer()._coordinator
    thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)
