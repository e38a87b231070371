"""Per-partition buffers of consumed, not yet committed records (pure; no I/O).

The invariant: a partition's buffer holds exactly the records between the group's committed offset
(or the last batch this consumer committed) and the consumer's fetch position, in offset order. So:
- a partition that stays assigned across a rebalance keeps its buffer (kafka-python keeps its fetch
  position; dropping the buffer would skip those records at the next commit);
- a partition that is no longer assigned, or is lost, loses its buffer (its new owner replays from
  the committed offset);
- records whose offsets go backwards mean the position was reset to the committed offset: the
  buffer restarts from them.
`resumed` marks a buffer whose first record is at the committed position (see `Batch.resumed`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kafka.structs import TopicPartition

from sinks.batch import Batch, SourceRecord


@dataclass
class PartitionBuffer:
    """The uncommitted records of one partition and when the oldest of them arrived."""

    records: list[SourceRecord] = field(default_factory=list)
    first_arrival: float = 0.0
    resumed: bool = True


class Buffers:
    """All partitions' buffers of one consumer."""

    def __init__(self, max_rows: int, max_wait_s: float) -> None:
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.by_partition: dict[TopicPartition, PartitionBuffer] = {}

    def add(self, tp: TopicPartition, records: list[SourceRecord], now: float) -> None:
        """Append freshly consumed records of `tp` (restarting the buffer if offsets went back)."""
        if not records:
            return
        buffer = self.by_partition.setdefault(tp, PartitionBuffer())
        if buffer.records and records[0].offset <= buffer.records[-1].offset:
            buffer = self.by_partition[tp] = PartitionBuffer()
        if not buffer.records:
            buffer.first_arrival = now
        buffer.records.extend(records)

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """The new full assignment: keep retained buffers, drop the others, add the new ones."""
        kept = set(partitions)
        for tp in list(self.by_partition):
            if tp not in kept:
                del self.by_partition[tp]
        for tp in kept:
            self.by_partition.setdefault(tp, PartitionBuffer())

    def lost(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions taken away without a clean revoke: forget their buffers."""
        for tp in partitions:
            self.by_partition.pop(tp, None)

    def next_due(self, now: float, *, force: bool = False) -> Batch | None:
        """The next batch to checkpoint: a full buffer, one whose oldest record waited long enough,
        or (with `force`) any non-empty one. None if nothing is due."""
        due = self.all_due(now, force=force)
        return due[0] if due else None

    def all_due(self, now: float, *, force: bool = False) -> list[Batch]:
        """Every partition's due batch (see `next_due`): checkpointed together, they share one
        quality-gate run per family. In (topic, partition) order: every checkpoint writes its
        partitions in the same order (the assignment arrives as a set)."""
        due = []
        for tp, buffer in sorted(self.by_partition.items()):
            if buffer.records and (
                force or len(buffer.records) >= self.max_rows or now - buffer.first_arrival >= self.max_wait_s
            ):
                due.append(
                    Batch(tp.topic, tp.partition, tuple(buffer.records[: self.max_rows]), buffer.resumed)
                )
        return due

    def committed(self, batch: Batch, now: float) -> None:
        """`batch` was checkpointed: drop its records if the buffer still starts with them."""
        tp = TopicPartition(batch.topic, batch.partition)
        buffer = self.by_partition.get(tp)
        if buffer is None or not buffer.records or buffer.records[0] is not batch.records[0]:
            return  # the buffer was dropped or restarted meanwhile (rebalance): nothing to remove
        del buffer.records[: len(batch.records)]
        buffer.resumed = False
        buffer.first_arrival = now
