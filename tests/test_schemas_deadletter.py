"""Dead letters in the contract's format, and reading them back."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.deadletter import build_dead_letter, parse_dead_letter
from schemas.decode import DecodeFailure, decode_event
from schemas.reasons import DeadLetterReason

FAILED_AT = datetime(2020, 9, 24, 7, 15, 1, 250000, tzinfo=UTC)
CONTRACT_FIELDS = {
    "reason",
    "detail",
    "original_topic",
    "original_partition",
    "original_offset",
    "original_key",
    "original_value",
    "event_id",
    "event_type",
    "failed_at",
}


def _letter(value: bytes, key: bytes | None = b"7707083893", **overrides: object) -> bytes:
    failure = decode_event(value)
    assert isinstance(failure, DecodeFailure)
    arguments: dict[str, object] = {
        "reason": failure.reason,
        "detail": failure.detail,
        "original_topic": "mic.orders",
        "original_partition": 3,
        "original_offset": 12345,
        "original_key": key,
        "original_value": value,
        "event_id": failure.event_id,
        "event_type": failure.event_type,
        "failed_at": FAILED_AT,
    }
    arguments.update(overrides)
    return build_dead_letter(**arguments)  # type: ignore[arg-type]


def test_utf8_value_is_kept_as_text_with_every_contract_field() -> None:
    value = b'{"event_type":"order.nope","event_id":"x"}'
    doc = json.loads(_letter(value))
    assert doc.keys() >= CONTRACT_FIELDS
    assert doc["reason"] == "unknown_event_type"
    assert doc["original_value"] == value.decode()
    assert doc["original_encoding"] == "utf-8"
    assert doc["original_key"] == "7707083893"
    assert (doc["original_topic"], doc["original_partition"], doc["original_offset"]) == (
        "mic.orders",
        3,
        12345,
    )
    assert (doc["event_id"], doc["event_type"]) == ("x", "order.nope")
    assert doc["failed_at"] == "2020-09-24T07:15:01.250000Z"
    assert doc["original_size"] == len(value) and doc["original_truncated"] is False


def test_non_utf8_value_and_key_are_base64_and_round_trip() -> None:
    value = b"\xff\xfe{not json"
    raw = _letter(value, key=b"\x80key")
    doc = json.loads(raw)
    assert doc["reason"] == "malformed"
    assert doc["original_encoding"] == "base64" and base64.b64decode(doc["original_value"]) == value
    assert doc["original_key_encoding"] == "base64"
    letter = parse_dead_letter(raw)
    assert letter.value_bytes() == value
    assert letter.key_bytes() == b"\x80key"
    assert letter.reason is DeadLetterReason.MALFORMED
    assert letter.failed_at == FAILED_AT


def test_missing_key_is_null() -> None:
    letter = parse_dead_letter(_letter(b"[]", key=None))
    assert letter.original_key is None and letter.key_bytes() is None


def test_failed_at_keeps_its_offset() -> None:
    moscow = datetime(2020, 9, 24, 10, 15, tzinfo=timezone(timedelta(hours=3)))
    assert json.loads(_letter(b"[]", failed_at=moscow))["failed_at"] == "2020-09-24T10:15:00+03:00"


def test_naive_failed_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _letter(b"[]", failed_at=datetime(2020, 1, 1))


def test_huge_values_can_be_truncated_to_fit_the_broker() -> None:
    value = b'{"title":"' + "я".encode() * 200_000 + b'"}'
    raw = _letter(value, max_value_bytes=1001)
    assert len(raw) < 2000
    letter = parse_dead_letter(raw)
    assert letter.original_truncated and letter.original_size == len(value)
    assert letter.original_encoding == "utf-8"  # cut inside a 2-byte character, still text
    assert value.startswith(letter.value_bytes()) and len(letter.value_bytes()) == 1000
    assert parse_dead_letter(_letter(value)).value_bytes() == value  # whole by default


@pytest.mark.parametrize(
    "raw",
    [b"", b"{}", b'{"reason":"bogus"}', b"[1]"],
)
def test_parse_dead_letter_rejects_what_is_not_one(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a dead letter"):
        parse_dead_letter(raw)


def test_parse_dead_letter_rejects_broken_base64() -> None:
    doc = json.loads(_letter(b"\xff"))
    doc["original_value"] = "***"
    with pytest.raises(ValueError, match="not a dead letter"):
        parse_dead_letter(json.dumps(doc).encode())
