"""The runner's per-partition buffers across batches, rebalances and position resets (no broker)."""

from __future__ import annotations

from kafka.structs import TopicPartition

from sinks.batch import SourceRecord
from sinks.buffers import Buffers

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def records(tp: TopicPartition, offsets: range) -> list[SourceRecord]:
    return [SourceRecord(tp.topic, tp.partition, o, None, f"v{o}".encode()) for o in offsets]


def test_batches_are_cut_by_size_then_by_age_and_marked_resumed_only_first() -> None:
    buffers = Buffers(max_rows=3, max_wait_s=5.0)
    buffers.add(A, records(A, range(0, 4)), now=0.0)
    batch = buffers.next_due(now=0.0)
    assert batch is not None and [r.offset for r in batch.records] == [0, 1, 2] and batch.resumed
    buffers.committed(batch, now=1.0)
    assert buffers.next_due(now=5.9) is None  # one record, waiting since 1.0
    late = buffers.next_due(now=6.0)
    assert late is not None and [r.offset for r in late.records] == [3] and not late.resumed


def test_a_retained_partition_keeps_its_buffer_and_a_moved_one_loses_it() -> None:
    buffers = Buffers(max_rows=100, max_wait_s=5.0)
    buffers.assigned([A, B])
    buffers.add(A, records(A, range(10, 15)), now=0.0)
    buffers.add(B, records(B, range(0, 2)), now=0.0)
    buffers.assigned([A])  # eager rebalance: everything "revoked", A assigned again
    batch = buffers.next_due(now=0.0, force=True)
    assert batch is not None and (batch.partition, batch.first_offset, batch.last_offset) == (0, 10, 14)
    assert B not in buffers.by_partition


def test_offsets_going_back_restart_the_buffer_at_the_committed_position() -> None:
    buffers = Buffers(max_rows=100, max_wait_s=5.0)
    buffers.add(A, records(A, range(10, 15)), now=0.0)
    stale = buffers.next_due(now=0.0, force=True)
    buffers.add(A, records(A, range(10, 12)), now=1.0)  # position reset to the committed offset 10
    batch = buffers.next_due(now=1.0, force=True)
    assert batch is not None and [r.offset for r in batch.records] == [10, 11] and batch.resumed
    assert stale is not None
    buffers.committed(stale, now=2.0)  # a batch cut before the reset removes nothing now
    assert [r.offset for r in buffers.by_partition[A].records] == [10, 11]


def test_lost_partitions_forget_their_records() -> None:
    buffers = Buffers(max_rows=100, max_wait_s=5.0)
    buffers.add(A, records(A, range(3)), now=0.0)
    buffers.lost([A])
    assert buffers.next_due(now=100.0, force=True) is None


def test_every_due_partition_is_checkpointed_together() -> None:
    buffers = Buffers(max_rows=3, max_wait_s=5.0)
    a, b, c = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)
    buffers.assigned([a, b, c])
    buffers.add(a, [SourceRecord("t", 0, i, None, b"x") for i in range(4)], now=0.0)  # full
    buffers.add(b, [SourceRecord("t", 1, 0, None, b"x")], now=0.0)  # waited long enough at 5.0
    buffers.add(c, [SourceRecord("u", 0, 0, None, b"x")], now=4.0)  # not yet
    due = buffers.all_due(now=5.0)
    assert [(d.topic, d.partition, len(d.records)) for d in due] == [("t", 0, 3), ("t", 1, 1)]
