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


def _due(buffers: Buffers, now: float, lag: dict[TopicPartition, int | None]) -> list[tuple[int, int]]:
    return [(d.partition, len(d.records)) for d in buffers.all_due(now=now, lag=lag)]


def test_caught_up_buffers_are_all_checkpointed_once_the_oldest_waited_the_live_wait() -> None:
    buffers = Buffers(max_rows=100, max_wait_s=2.0, live_wait_s=0.5)
    parts = [TopicPartition("t", p) for p in range(3)]
    buffers.assigned(parts)
    for p, tp in enumerate(parts):
        buffers.add(tp, records(tp, range(p + 1)), now=0.1 * p)  # arriving one after the other
    live = {tp: 0 for tp in parts}
    assert _due(buffers, 0.49, live) == []  # the oldest waited less than the live wait
    assert _due(buffers, 0.5, live) == [(0, 1), (1, 2), (2, 3)]  # one checkpoint, not three
    # without the lag (or with it unknown) the backlog rule holds: each on its own max wait
    assert _due(buffers, 0.5, {}) == []
    assert _due(buffers, 0.5, {**live, parts[2]: None}) == []
    assert _due(buffers, 2.0, {}) == [(0, 1)]


def test_while_a_partition_is_behind_only_due_and_ripe_live_buffers_are_checkpointed() -> None:
    buffers = Buffers(max_rows=100, max_wait_s=2.0, live_wait_s=0.5)
    behind, ripe, fresh = (TopicPartition("t", p) for p in range(3))
    buffers.assigned([behind, ripe, fresh])
    buffers.add(behind, records(behind, range(100)), now=0.0)  # full: due
    buffers.add(ripe, records(ripe, range(5)), now=0.0)
    buffers.add(fresh, records(fresh, range(5)), now=0.8)
    lag = {behind: 50_000, ripe: 0, fresh: 0}  # the broker holds far more than live_lag beyond `behind`
    assert buffers.live_lag == 10
    assert _due(buffers, 0.4, {**lag, behind: 11}) == [(0, 100)]  # `ripe` has not waited 0.5 s yet
    assert _due(buffers, 1.0, lag) == [(0, 100), (1, 5)]  # `fresh` waited 0.2 s only
    buffers.add(behind, records(behind, range(100, 150)), now=1.0)
    buffers.committed(buffers.all_due(now=1.0, lag=lag)[0], now=1.0)
    assert _due(buffers, 1.5, lag) == []  # nothing due by the backlog rule, and not caught up
    assert _due(buffers, 1.5, {**lag, behind: 10}) == [(0, 50), (1, 5), (2, 5)]  # caught up now


def test_the_live_wait_is_capped_at_the_max_wait() -> None:
    buffers = Buffers(max_rows=100, max_wait_s=1.0, live_wait_s=5.0)
    buffers.add(A, records(A, range(3)), now=0.0)
    assert buffers.live_wait_s == 1.0 and _due(buffers, 1.0, {A: 0}) == [(0, 3)]


def test_a_backlog_spread_thinly_over_many_partitions_is_not_caught_up() -> None:
    buffers = Buffers(max_rows=100, max_wait_s=2.0, live_wait_s=0.5)
    parts = [TopicPartition("t", p) for p in range(12)]
    for tp in parts:
        buffers.add(tp, records(tp, range(5)), now=0.0)
    thin = {tp: 9 for tp in parts}  # each partition live (<= 10 behind), 108 records behind in all
    assert _due(buffers, 1.0, thin) == []
    assert len(_due(buffers, 1.0, {**thin, parts[0]: 1})) == 12  # 100 behind in all: caught up


def test_a_checkpoint_holds_at_most_twice_max_rows_and_the_rest_is_due_at_once() -> None:
    buffers = Buffers(max_rows=10, max_wait_s=2.0, live_wait_s=0.5)
    parts = [TopicPartition("t", p) for p in range(5)]
    for tp in parts:
        buffers.add(tp, records(tp, range(8)), now=0.0)
    live = {tp: 0 for tp in parts}
    first = buffers.all_due(now=1.0, lag=live)
    assert [(b.partition, len(b.records)) for b in first] == [(0, 8), (1, 8)]  # a third: 24 > 20
    for batch in first:
        buffers.committed(batch, now=1.0)
    assert _due(buffers, 1.0, live) == [(2, 8), (3, 8)]
    big = Buffers(max_rows=10, max_wait_s=2.0)
    big.add(A, records(A, range(25)), now=0.0)
    assert [len(b.records) for b in big.all_due(now=0.0)] == [10]  # one batch is always taken
