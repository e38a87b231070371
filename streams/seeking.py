"""Seek partitions without a committed offset back to their start when faust seeks to committed.

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
same way: the waiting topic of a killed worker had no commit yet.

Fix: after aiokafka's seek, partitions of the `topics` this app processes that have no committed
offset (None or 0) are sought to offset 0 (below the log start, the consumer's reset policy,
earliest, applies). Changelog partitions are left alone: table recovery positions them itself.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

_installed_for: set[str] = set()


async def seek_to_committed_or_start(consumer: Any, topics: Collection[str]) -> Mapping[Any, int]:
    """aiokafka's `seek_to_committed` for every assigned partition, then offset 0 for those of
    `topics` without a committed offset (None or 0); returns the committed offsets."""
    committed: Mapping[Any, int] = await consumer.seek_to_committed()
    for tp, offset in committed.items():
        if not offset and tp.topic in topics:
            consumer.seek(tp, 0)
    return committed


def install(topics: Collection[str]) -> None:
    """Patch faust's aiokafka consumer thread so `seek_to_committed` also rewinds never-committed
    partitions of `topics` (call before the worker starts; topics add up over calls)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    _installed_for.update(topics)
    if getattr(AIOKafkaConsumerThread, "_mic_seek_fixed", False):
        return

    async def seek_to_committed(self: Any) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        result: Mapping[Any, int] = await self.call_thread(
            seek_to_committed_or_start, consumer, _installed_for
        )
        return result

    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    AIOKafkaConsumerThread._mic_seek_fixed = True  # type: ignore[attr-defined]
