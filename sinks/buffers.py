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

When a batch is due (`all_due`): a buffer is due when it holds `max_rows` records or its oldest record
has waited `max_wait_s` -- the rule for a backlog, where big batches amortize the per-checkpoint cost
(the quality gate's fixed cost per call). A consumer that has caught up works differently: a partition is
*live* when the broker holds at most `live_lag` (`max_rows / 10`) records beyond its buffer (its
`lag`, from the last fetch's high watermark), and the consumer has *caught up* when every non-empty
buffer is live and together they lag at most `max_rows` records (one batch). Then they are all due
together as soon as the oldest has waited `live_wait_s`: one checkpoint for every partition instead of
one per partition, each on its own deadline (30 partitions at 500 events/s each paying the gate's
fixed cost is what put the sinks' p99 latency at 3.5-6 s). While the consumer is behind (a backlog,
however thinly spread over the partitions), the backlog rule holds, and a live buffer that has
waited `live_wait_s` goes along with any checkpoint that is due anyway.

One checkpoint takes due batches in (topic, partition) order up to twice `max_rows` rows in all:
what one gate call and one write hold in memory stays bounded (a consumer that read a 100,000-record
backlog ahead before anything was due once made one checkpoint of 90,000 rows, and the sinks' peak
RSS rose by 150-200 MiB); the rest is due again at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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

    def __init__(self, max_rows: int, max_wait_s: float, live_wait_s: float | None = None) -> None:
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.live_wait_s = max_wait_s if live_wait_s is None else min(live_wait_s, max_wait_s)
        self.live_lag = max(1, max_rows // 10)
        """A partition with at most this many records at the broker beyond its buffer is live."""
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
        """The first batch `all_due` would return (no lag known: the backlog rule), or None."""
        due = self.all_due(now, force=force)
        return due[0] if due else None

    def all_due(
        self, now: float, *, force: bool = False, lag: Mapping[TopicPartition, int | None] | None = None
    ) -> list[Batch]:
        """The due batches, one per partition (see the module doc), checkpointed together: they share
        one quality-gate run. `lag` maps a partition to the records the broker holds beyond its buffer
        (None: unknown, so not live); `force` makes every non-empty buffer due. In (topic,
        partition) order: every checkpoint writes its partitions in the same order (the assignment
        arrives as a set)."""
        waiting = [(tp, buffer) for tp, buffer in sorted(self.by_partition.items()) if buffer.records]
        known = lag or {}

        def live(tp: TopicPartition) -> bool:
            behind = known.get(tp)
            return behind is not None and behind <= self.live_lag

        def ripe(buffer: PartitionBuffer) -> bool:
            return now - buffer.first_arrival >= self.live_wait_s

        caught_up = (
            waiting
            and all(live(tp) for tp, _ in waiting)
            and sum(known[tp] or 0 for tp, _ in waiting) <= self.max_rows
        )
        if caught_up and any(ripe(b) for _, b in waiting):
            force = True  # everything buffered, at once
        due = [
            (tp, buffer)
            for tp, buffer in waiting
            if force or len(buffer.records) >= self.max_rows or now - buffer.first_arrival >= self.max_wait_s
        ]
        if due and not force:
            chosen = {tp for tp, _ in due}
            due = [(tp, b) for tp, b in waiting if tp in chosen or (live(tp) and ripe(b))]
        batches: list[Batch] = []
        rows = 0
        for tp, buffer in due:  # at most 2 x `max_rows` rows per checkpoint: its memory is bounded
            records = tuple(buffer.records[: self.max_rows])
            if batches and rows + len(records) > 2 * self.max_rows:
                break  # the rest is due again at once (`SinkRunner._checkpoint_due` loops)
            batches.append(Batch(tp.topic, tp.partition, records, buffer.resumed))
            rows += len(records)
        return batches

    def committed(self, batch: Batch, now: float) -> None:
        """`batch` was checkpointed: drop its records if the buffer still starts with them."""
        tp = TopicPartition(batch.topic, batch.partition)
        buffer = self.by_partition.get(tp)
        if buffer is None or not buffer.records or buffer.records[0] is not batch.records[0]:
            return  # the buffer was dropped or restarted meanwhile (rebalance): nothing to remove
        del buffer.records[: len(batch.records)]
        buffer.resumed = False
        buffer.first_arrival = now
