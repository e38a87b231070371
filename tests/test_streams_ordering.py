"""Unit tests of `streams.ordering`: records are admitted in offset order from the last seek."""

from __future__ import annotations

from streams.ordering import Admission, OffsetOrder

TP = ("mic.orders", 0)


def _records(first: int, last: int) -> bool:
    return False  # no gap the fetcher saw: every offset is a record


def test_records_are_admitted_in_order_from_the_sought_offset() -> None:
    order = OffsetOrder()
    order.sought(TP, 10)
    assert order.admit(TP, 10, _records, now=0.0) is Admission.PROCESS
    order.processed(TP, 10)
    assert order.admit(TP, 11, _records, now=0.0) is Admission.PROCESS
    order.processed(TP, 11)
    assert order.admit(TP, 9, _records, now=0.0) is Admission.SKIP  # decided since the seek
    assert order.expected(TP) == 12


def test_a_hole_is_re_read_and_later_records_wait_for_it() -> None:
    order = OffsetOrder(retry_s=2.0)
    order.sought(TP, 345)
    order.processed(TP, 345)
    assert order.admit(TP, 347, _records, now=0.0) is Admission.RESEEK  # 346 was dropped
    assert order.expected(TP) == 346
    assert order.admit(TP, 348, _records, now=0.5) is Admission.SKIP  # fetched before the re-seek
    assert order.admit(TP, 346, _records, now=0.7) is Admission.PROCESS
    order.processed(TP, 346)
    assert order.admit(TP, 347, _records, now=0.8) is Admission.PROCESS
    assert order.overdue(now=10.0) == []


def test_an_unanswered_re_read_is_repeated() -> None:
    order = OffsetOrder(retry_s=2.0)
    order.sought(TP, 100)
    assert order.admit(TP, 105, _records, now=0.0) is Admission.RESEEK
    assert order.overdue(now=1.0) == []
    assert order.overdue(now=2.5) == [(TP, 100)]  # the timer seeks again
    assert order.overdue(now=3.0) == []
    assert order.admit(TP, 106, _records, now=3.0) is Admission.SKIP
    assert order.admit(TP, 106, _records, now=5.0) is Admission.RESEEK  # a later record, still no 100
    order.sought(TP, 100)  # a rebalance's seek supersedes the re-read
    assert order.overdue(now=100.0) == []


def test_a_gap_the_fetcher_saw_is_not_a_hole() -> None:
    order = OffsetOrder()
    order.sought(TP, 20)
    order.processed(TP, 20)
    markers = {21}  # e.g. a transaction's commit marker
    assert (
        order.admit(TP, 22, lambda first, last: set(range(first, last + 1)) <= markers, now=0.0)
        is Admission.PROCESS
    )


def test_partitions_are_independent_and_unknown_ones_are_not_checked() -> None:
    order = OffsetOrder()
    order.sought(TP, 5)
    assert order.admit(("mic.orders", 1), 999, _records, now=0.0) is Admission.PROCESS
    assert order.admit(TP, 6, _records, now=0.0) is Admission.RESEEK
