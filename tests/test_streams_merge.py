"""Unit tests of `streams.merge`: a partition's input topics are decided oldest record first."""

from __future__ import annotations

from dataclasses import dataclass

from streams.merge import InputMerge

MEMBERS, ORDERS = ("mic.membership", 0), ("mic.orders", 0)
TPS = [MEMBERS, ORDERS]


@dataclass(frozen=True)
class Rec:
    offset: int
    timestamp: int


def _offsets(taken: list[tuple[tuple[str, int], Rec]]) -> list[tuple[str, int]]:
    return [(tp[0], record.offset) for tp, record in taken]


def test_records_of_a_partition_are_taken_oldest_first_and_in_offset_order_per_topic() -> None:
    merge = InputMerge()
    merge.add(ORDERS, [Rec(0, 50), Rec(1, 10), Rec(2, 60)])  # timestamps out of order within a topic
    merge.add(MEMBERS, [Rec(0, 5), Rec(1, 40)])
    taken = merge.take(0, TPS, lagging=lambda tp: False)
    assert _offsets(taken) == [
        ("mic.membership", 0),
        ("mic.membership", 1),
        ("mic.orders", 0),  # offset order kept: 1 (at 10) comes after 0 (at 50)
        ("mic.orders", 1),
        ("mic.orders", 2),
    ]
    assert merge.partitions() == [] and merge.take(0, TPS, lagging=lambda tp: False) == []


def test_a_lagging_topic_holds_the_merge_back_until_its_records_arrive_or_the_wait_ends() -> None:
    now = [0.0]
    merge = InputMerge(max_idle_s=1.0, clock=lambda: now[0])
    members_lag = {MEMBERS: True}
    lagging = lambda tp: members_lag.get(tp, False)  # noqa: E731
    merge.add(ORDERS, [Rec(0, 100), Rec(1, 200)])
    assert merge.take(0, TPS, lagging) == []  # membership has unfetched records: they may be older
    merge.add(MEMBERS, [Rec(0, 90)])
    taken = merge.take(0, TPS, lagging)  # membership runs empty again while still lagging: stop there
    assert _offsets(taken) == [("mic.membership", 0)]
    merge.add(MEMBERS, [Rec(1, 150)])
    members_lag[MEMBERS] = False
    assert _offsets(merge.take(0, TPS, lagging)) == [
        ("mic.orders", 0),
        ("mic.membership", 1),
        ("mic.orders", 1),
    ]
    merge.add(ORDERS, [Rec(2, 300)])
    members_lag[MEMBERS] = True
    assert merge.take(0, TPS, lagging) == []
    now[0] = 1.5  # a topic slow to fetch must not stall the others for more than max_idle_s
    assert _offsets(merge.take(0, TPS, lagging)) == [("mic.orders", 2)]


def test_dropped_partitions_forget_their_buffers() -> None:
    merge = InputMerge()
    merge.add(ORDERS, [Rec(0, 1)])
    merge.add(("mic.orders", 1), [Rec(0, 1)])
    assert merge.buffered(ORDERS) == 1 and sorted(merge.partitions()) == [0, 1]
    merge.drop([ORDERS])
    assert merge.buffered(ORDERS) == 0 and merge.partitions() == [1]


def test_equal_timestamps_take_membership_first() -> None:
    merge = InputMerge()
    merge.add(ORDERS, [Rec(0, 7)])  # buffered first, stamped in the same millisecond as the join
    merge.add(MEMBERS, [Rec(0, 7)])
    taken = _offsets(merge.take(0, TPS, lagging=lambda tp: False))
    assert taken == [("mic.membership", 0), ("mic.orders", 0)]
