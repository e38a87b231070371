"""Decoding enriched records into typed rows (pure)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson
import pytest
from sinks_records import BASE_TIME, company, record

from schemas.reasons import DeadLetterReason
from schemas.topics import Family
from sinks.errors import TerminalRecordError
from sinks.rows import decode_row, event_date, peek_identity


def test_values_get_their_python_types_and_timestamps_become_utc() -> None:
    row = record(
        Family.FACTORING,
        "factoring.funded",
        company(1),
        BASE_TIME,
        request_id="r1",
        advance_rub="8000.10",
        fee_rate=0.015,
        due_date="2020-11-30",
    )
    row["occurred_at"] = "2020-09-01T02:30:00+03:00"
    decoded = decode_row(Family.FACTORING, orjson.dumps(row))
    assert decoded["advance_rub"] == Decimal("8000.10") and str(decoded["advance_rub"]) == "8000.10"
    assert decoded["due_date"] == dt.date(2020, 11, 30)
    assert decoded["occurred_at"] == dt.datetime(2020, 8, 31, 23, 30, tzinfo=dt.UTC)
    assert decoded["occurred_at"].tzinfo is dt.UTC
    assert event_date(decoded) == dt.date(2020, 8, 31)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount_rub": "10000000000000000.00"}, DeadLetterReason.SCHEMA_VIOLATION),  # not NUMERIC(18,2)
        ({"amount_rub": "NaN"}, DeadLetterReason.SCHEMA_VIOLATION),
        ({"quantity": 2**63}, DeadLetterReason.SCHEMA_VIOLATION),  # not 64 bits
        ({"amount_rub": "5"}, DeadLetterReason.SCHEMA_VIOLATION),
        ({"occurred_at": "2020-09-01T10:00:00"}, DeadLetterReason.SCHEMA_VIOLATION),  # no offset
        ({"event_id": None}, DeadLetterReason.SCHEMA_VIOLATION),
        ({"quantity": "3"}, DeadLetterReason.SCHEMA_VIOLATION),
    ],
)
def test_records_that_can_never_be_written_are_terminal(
    change: dict[str, object], reason: DeadLetterReason
) -> None:
    row = record(Family.ORDER, "order.completed", company(1), BASE_TIME, order_id="o", amount_rub="1.00")
    row.update(change)
    with pytest.raises(TerminalRecordError) as failure:
        decode_row(Family.ORDER, orjson.dumps(row))
    assert failure.value.reason is reason


def test_a_missing_key_is_a_violation_and_garbage_is_malformed() -> None:
    row = record(Family.ORDER, "order.cancelled", company(1), BASE_TIME, order_id="o")
    del row["trace_id"]
    with pytest.raises(TerminalRecordError) as missing:
        decode_row(Family.ORDER, orjson.dumps(row))
    assert missing.value.reason is DeadLetterReason.SCHEMA_VIOLATION and "trace_id" in missing.value.detail
    with pytest.raises(TerminalRecordError) as garbage:
        decode_row(Family.ORDER, b"\xff{")
    assert garbage.value.reason is DeadLetterReason.MALFORMED
    assert peek_identity(orjson.dumps(row)) == (row["event_id"], "order.cancelled")
    assert peek_identity(b"[]") == (None, None)


def _order_batch(count: int) -> list[dict[str, object]]:
    return [
        record(
            Family.ORDER,
            "order.placed",
            company(i),
            BASE_TIME,
            order_id=f"o{i}",
            industry="electronics",
            title=f"order {i}",
            quantity=i + 1,
            budget_rub=f"{i}.25",
            deadline="2021-01-31",
        )
        for i in range(count)
    ]


def test_decoded_rows_transpose_once_into_the_columns_the_generic_path_gives() -> None:
    from schemas.warehouse import column_names
    from sinks.batch import Batch, SourceRecord
    from sinks.rows import Rows, column_lists, decode_group

    encoded = [orjson.dumps(r) for r in _order_batch(5)]
    batch = Batch("t", 0, tuple(SourceRecord("t", 0, i, None, v) for i, v in enumerate(encoded)))
    decoded, _ = decode_group(Family.ORDER, [batch])
    assert isinstance(decoded.rows, Rows) and len(decoded.rows) == 5
    names = list(column_names(Family.ORDER))
    shared = column_lists(names, decoded.rows)
    assert shared == column_lists(names, list(decoded.rows))  # a plain list: lookups by name
    assert column_lists(names, decoded.rows) is shared  # transposed once
    subset = ["quantity", "order_id"]
    assert column_lists(subset, decoded.rows) == [(1, 2, 3, 4, 5), ("o0", "o1", "o2", "o3", "o4")]
    decoded.rows.append(decoded.rows[0])
    assert column_lists(names, decoded.rows) == column_lists(names, list(decoded.rows))  # made again
    decoded.rows[1] = decoded.rows[2]  # the same length, another row: made again too
    assert column_lists(["order_id"], decoded.rows) == [("o0", "o2", "o2", "o3", "o4", "o0")]
    assert column_lists(names, decoded.rows)[names.index("order_id")] == ("o0", "o2", "o2", "o3", "o4", "o0")
    del decoded.rows[0]
    decoded.rows.sort(key=lambda row: str(row["order_id"]), reverse=True)
    assert column_lists(names, decoded.rows) == column_lists(names, list(decoded.rows))
    assert column_lists(names, Rows(Family.ORDER)) == [() for _ in names]


def test_rows_not_in_column_order_are_refused() -> None:
    from schemas.warehouse import column_names
    from sinks.rows import Rows

    row = decode_row(Family.ORDER, orjson.dumps(_order_batch(1)[0]))
    reordered = dict(reversed(list(row.items())))
    with pytest.raises(ValueError, match="not made by decode_row"):
        Rows(Family.ORDER, [reordered]).columns()
    with pytest.raises(ValueError, match="not made by decode_row"):  # any row, not only the first
        Rows(Family.ORDER, [row, row, reordered]).columns()
    assert Rows(Family.ORDER, [row]).columns()[0] == (row[column_names(Family.ORDER)[0]],)


def test_screening_keeps_rows_with_their_columns() -> None:
    from sinks.batch import SourceRecord
    from sinks.quality.verdict import Failure, Verdict
    from sinks.quarantine import screen_all
    from sinks.rows import Rows

    rows = Rows(Family.ORDER, [decode_row(Family.ORDER, orjson.dumps(r)) for r in _order_batch(3)])
    sources = [SourceRecord("t", 0, i, None, b"{}") for i in range(3)]

    class Refuses:
        def __init__(self, verdict: Verdict) -> None:
            self.verdict = verdict

        def check(self, family: Family, checked: object) -> Verdict:
            return self.verdict

    passed = screen_all(Refuses(Verdict()), {Family.ORDER: (rows, sources)})[Family.ORDER]
    assert passed.rows is rows
    failure = Failure("expect_column_values_to_be_between", "quantity", "a rule", "1")
    split = screen_all(Refuses(Verdict({1: (failure,)})), {Family.ORDER: (rows, sources)})[Family.ORDER]
    assert isinstance(split.rows, Rows) and split.rows == [rows[0], rows[2]]
    assert [entry.event_id for entry in split.quarantined] == [rows[1]["event_id"]]
