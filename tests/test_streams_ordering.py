"""Unit tests of `streams.ordering`: fetched batches are decided in offset order from the last seek."""

from __future__ import annotations

from streams.ordering import Admission, OffsetOrder

TP = ("mic.orders", 0)


def test_batches_are_decided_in_order_from_the_sought_offset() -> None:
    order = OffsetOrder()
    order.sought(TP, 10)
    admitted = order.admit(TP, [10, 11, 12])
    assert admitted.admission is Admission.DECIDE and admitted.start == 0
    order.accepted(TP, 12)
    assert order.expected(TP) == 13
    stale = order.admit(TP, [11, 12, 13, 14])  # a fetch under way when the consumer was sought
    assert stale.admission is Admission.DECIDE and stale.start == 2
    assert order.admit(TP, [9, 10]).start == 2  # nothing of it is decided again


def test_a_hole_is_re_read_before_later_records_are_decided() -> None:
    order = OffsetOrder()
    order.sought(TP, 345)
    order.accepted(TP, 345)
    missing = order.admit(TP, [347, 348])  # 346 was not delivered
    assert missing.admission is Admission.RESEEK and missing.seek_to == 346
    assert order.expected(TP) == 346
    order.sought(TP, 346)
    assert order.admit(TP, [346, 347, 348]).admission is Admission.DECIDE


def test_offsets_that_are_not_records_are_decided_past_after_one_re_read() -> None:
    """Transaction markers or expired records: the fetch after the re-seek starts at the same offset."""
    order = OffsetOrder()
    order.sought(TP, 20)
    assert order.admit(TP, [22, 23]).admission is Admission.RESEEK
    order.sought(TP, 20)
    confirmed = order.admit(TP, [22, 23])
    assert confirmed.admission is Admission.DECIDE and confirmed.start == 0
    order.accepted(TP, 23)
    assert order.admit(TP, [26]).admission is Admission.RESEEK  # a new gap is checked again


def test_a_partition_never_sought_decides_what_it_gets() -> None:
    order = OffsetOrder()
    assert order.admit(TP, [5, 6]).admission is Admission.DECIDE
    order.accepted(TP, 6)
    order.forget(TP)
    assert order.expected(TP) is None
