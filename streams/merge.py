"""The input topics of one partition number, merged in record-timestamp order.

Everything about a company is on one partition number of four topics (membership, orders, patents,
factoring). The fetcher reads those four topic-partitions at unequal speeds -- on a backlog it may
hand over orders from an hour after the membership records it has fetched so far -- and rule 1 would
then park every order whose customer's `member.joined` is simply not fetched yet (on a 100,000-record
simulator backlog, about half of all records). So, like Kafka Streams picks a task's next record
across its co-partitioned inputs by timestamp, the worker buffers each topic-partition's fetched
records and decides the partition's records oldest first (`take`): a topic-partition whose buffer
ran empty while the broker still has records for it (`lagging`) holds the merge back, since its next
record may be older -- until `max_idle_s` passed without any record of it arriving, after which the
merge goes on without it (a topic that is slow to fetch must not stall the others; one that keeps
arriving, even in the large chunks aiokafka's fetcher hands over one topic at a time, is waited
for). Within one topic-partition the offset order is kept: only buffer heads are compared.

Record timestamps are the producers' (CreateTime); they order the merge, never a decision.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any

MAX_IDLE_S = 2.0
"""Longest a partition's merge waits for a lagging topic-partition from which no record arrives."""


class InputMerge:
    """Fetched records per topic-partition, released per partition number in timestamp order."""

    def __init__(
        self, *, max_idle_s: float = MAX_IDLE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_idle_s = max_idle_s
        self.clock = clock
        self._buffers: dict[int, dict[Hashable, deque[Any]]] = {}
        self._starved_since: dict[Hashable, float] = {}
        """Topic-partition -> when the merge first waited for it (buffer empty, records at the broker)."""

    def add(self, tp: Any, records: Sequence[Any]) -> None:
        """Buffer `records` of `tp` (a (topic, partition) tuple), in offset order, after earlier ones."""
        if records:
            self._buffers.setdefault(tp[1], {}).setdefault(tp, deque()).extend(records)
            self._starved_since.pop(tp, None)

    def buffered(self, tp: Any) -> int:
        buffer = self._buffers.get(tp[1], {}).get(tp)
        return len(buffer) if buffer is not None else 0

    def partitions(self) -> list[int]:
        """Partition numbers with buffered records."""
        return [p for p, buffers in self._buffers.items() if any(buffers.values())]

    def drop(self, tps: Sequence[Any]) -> None:
        """Forget the buffered records of `tps` (a rebalance: they are read again from the last commit)."""
        for tp in tps:
            self._starved_since.pop(tp, None)
            buffers = self._buffers.get(tp[1])
            if buffers is not None:
                buffers.pop(tp, None)
                if not buffers:
                    del self._buffers[tp[1]]

    def take(
        self, partition: int, tps: Sequence[Any], lagging: Callable[[Any], bool]
    ) -> list[tuple[Any, Any]]:
        """The records of `partition` that can be decided now, oldest first: `(tp, record)`.

        `tps` are all input topic-partitions of the partition (buffered or not), in the order that
        breaks ties of equal timestamps (producers stamp milliseconds: a `member.joined` and the
        order it enables are often stamped alike, so membership comes first); `lagging(tp)` says
        whether the broker has records of `tp` that are not buffered yet.
        """
        buffers = self._buffers.get(partition)
        if not buffers:
            return []
        now = self.clock()
        if any(self._waits_for(tp, buffers, lagging, now) for tp in tps):
            return []
        rank = {tp: order for order, tp in enumerate(tps)}
        heap = [(b[0].timestamp, rank.get(tp, len(rank)), tp) for tp, b in buffers.items() if b]
        heapq.heapify(heap)
        taken: list[tuple[Any, Any]] = []
        while heap:
            _, order, tp = heapq.heappop(heap)
            buffer = buffers[tp]
            taken.append((tp, buffer.popleft()))
            if buffer:
                heapq.heappush(heap, (buffer[0].timestamp, order, tp))
            elif self._waits_for(tp, buffers, lagging, now):
                break  # its next record, not fetched yet, may be older than the others
        return taken

    def _waits_for(
        self, tp: Any, buffers: dict[Hashable, deque[Any]], lagging: Callable[[Any], bool], now: float
    ) -> bool:
        """Whether the merge must wait for `tp`: nothing buffered, records at the broker, and one
        arrived less than `max_idle_s` ago (or the wait just began)."""
        if buffers.get(tp) or not lagging(tp):
            self._starved_since.pop(tp, None)
            return False
        since = self._starved_since.setdefault(tp, now)
        return now - since < self.max_idle_s
