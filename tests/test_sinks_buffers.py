"""The runner's per-partition buffers across batches, rebalances and position resets (no broker)."""

from __future__ import annotations

import pytest
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


def test_one_due_partition_takes_every_buffered_partition_into_its_checkpoint() -> None:
    buffers = Buffers(max_rows=3, max_wait_s=5.0)
    a, b, c = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)
    buffers.assigned([c, b, a])
    buffers.add(b, [SourceRecord("t", 1, 0, None, b"x")], now=0.0)
    buffers.add(c, [SourceRecord("u", 0, 0, None, b"x")], now=4.0)
    assert buffers.all_due(now=4.9) == []  # b waits until 5.0, c until 9.0
    due = buffers.all_due(now=5.0)  # b is due: c goes along (one gate run, no checkpoint of its own)
    assert [(d.topic, d.partition, len(d.records)) for d in due] == [("t", 1, 1), ("u", 0, 1)]
    buffers.add(a, [SourceRecord("t", 0, i, None, b"x") for i in range(4)], now=5.0)  # full at once
    due = buffers.all_due(now=5.0)
    assert [(d.topic, d.partition, len(d.records)) for d in due] == [("t", 0, 3), ("t", 1, 1), ("u", 0, 1)]
    for batch in due:
        buffers.committed(batch, now=6.0)
    assert buffers.all_due(now=10.9) == []  # a's fourth record: its wait starts at the commit
    assert [(d.partition, len(d.records)) for d in buffers.all_due(now=11.0)] == [(0, 1)]


def test_records_polled_after_a_checkpoint_wait_from_the_poll_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record that reached the broker while a checkpoint ran is due one `max_batch_wait_s` after
    the poll before the checkpoint, not after the poll that returned it (which would add the
    checkpoint's duration to its latency every time)."""
    import time
    from types import SimpleNamespace

    from sinks.runner import SinkRunner

    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    runner = SinkRunner.__new__(SinkRunner)
    runner.buffers = Buffers(max_rows=100, max_wait_s=1.0)
    runner._polled_at = 100.0
    runner._buffer({})  # a poll at 100.0 returned nothing; then a checkpoint runs for 0.8 s
    clock[0] = 100.8
    message = SimpleNamespace(topic="t", partition=0, offset=7, key=None, value=b"v")
    runner._buffer({A: [message]})
    assert runner.buffers.all_due(100.99) == []
    assert [b.last_offset for b in runner.buffers.all_due(101.0)] == [7]
