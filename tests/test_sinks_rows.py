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
