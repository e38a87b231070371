"""Contract clarification of 2026-11-30: years 2000-2099 and no control characters in strings.

`occurred_at` must lie, in UTC, within 2000-01-01T00:00:00Z..2099-12-31T23:59:59Z; `deadline` and
`due_date` within 2000-01-01..2099-12-31; no string may hold U+0000-U+001F (but TAB, LF, CR) or
U+007F, raw or escaped. A breach is a `schema_violation` naming the field, with `event_id` and
`event_type` kept, and never an exception (before, `9999-12-31T23:59:59-05:00` passed the decoder
and raised OverflowError in the stream; `"A\\u0000B"` passed and crashed the PostgreSQL sink).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from schemas_documents import VIOLATION, assert_failure, document, dumps, json_default, setter

from schemas.decode import DecodeFailure, decode_event
from schemas.encode import encode_event
from schemas.events import Event, OrderPlaced
from schemas.examples import EXAMPLE_PAYLOADS, example_event, example_events
from schemas.registry import DEFAULT_REGISTRY
from streams.rules import Violation, apply_event


def _decode(event_type: str, path: str, value: Any) -> Event | DecodeFailure:
    doc = document(event_type)
    setter(path, value)(doc)
    return decode_event(dumps(doc))


def _assert_violation(result: Event | DecodeFailure, event_type: str, detail: str) -> None:
    assert_failure(result, VIOLATION, detail)
    assert isinstance(result, DecodeFailure)
    assert result.event_type == event_type and result.event_id is not None


# --- occurred_at -----------------------------------------------------------------------------------

IN_RANGE_TIMES = [
    "2000-01-01T00:00:00Z",
    "2099-12-31T23:59:59Z",
    "2099-12-31T23:59:59.000Z",
    "1999-12-31T23:30:00-01:00",  # 2000-01-01T00:30:00Z
    "2100-01-01T00:30:00+01:00",  # 2099-12-31T23:30:00Z
    "2000-01-01T03:00:00+03:00",
    "2050-06-15T12:00:00+14:00",
]
OUT_OF_RANGE_TIMES = [
    "1999-12-31T23:59:59Z",
    "1999-12-31T23:30:00+01:00",  # 1999-12-31T22:30:00Z
    "2100-01-01T00:00:00Z",
    "2099-12-31T23:59:59.5Z",
    "2099-12-31T23:30:00-01:00",  # 2100-01-01T00:30:00Z
    "2000-01-01T02:59:59+03:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-05:00",  # no UTC representation: OverflowError in a conversion
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",  # likewise, below year 1
    "1970-01-01T00:00:00Z",
]


@pytest.mark.parametrize("moment", IN_RANGE_TIMES)
def test_occurred_at_within_the_range_is_valid(moment: str) -> None:
    result = _decode("member.joined", "occurred_at", moment)
    assert isinstance(result, Event), result


@pytest.mark.parametrize("moment", OUT_OF_RANGE_TIMES)
def test_occurred_at_outside_the_range_is_a_schema_violation(moment: str) -> None:
    result = _decode("member.joined", "occurred_at", moment)
    _assert_violation(result, "member.joined", f"$.occurred_at: {moment} is outside 2000-01-01T00:00:00Z")


# --- dates -----------------------------------------------------------------------------------------

DATE_FIELDS = [("order.placed", "deadline"), ("factoring.requested", "due_date")]


def test_every_date_field_of_the_contract_is_covered() -> None:
    found = {(spec.event_type, name) for spec in DEFAULT_REGISTRY.all_specs() for name in spec.date_fields}
    assert found == set(DATE_FIELDS)


@pytest.mark.parametrize(("event_type", "name"), DATE_FIELDS)
@pytest.mark.parametrize("day", ["2000-01-01", "2099-12-31", "2020-02-29"])
def test_dates_within_the_range_are_valid(event_type: str, name: str, day: str) -> None:
    result = _decode(event_type, f"payload.{name}", day)
    assert isinstance(result, Event), result


@pytest.mark.parametrize(("event_type", "name"), DATE_FIELDS)
@pytest.mark.parametrize("day", ["1999-12-31", "2100-01-01", "9999-12-31", "0001-01-01"])
def test_dates_outside_the_range_are_schema_violations(event_type: str, name: str, day: str) -> None:
    result = _decode(event_type, f"payload.{name}", day)
    _assert_violation(result, event_type, f"$.payload.{name}: {day} is outside 2000-01-01..2099-12-31")


# --- control characters ----------------------------------------------------------------------------

BANNED = [chr(code) for code in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)]
ALLOWED_CONTROLS = ["\t", "\n", "\r"]


FREE_TEXT_NAMES = ("name", "reason", "order_id", "title", "patent_id", "request_id")
"""The payload's free-text strings (the others are enums, INNs, region codes or dates)."""
FREE_TEXT = [
    (event.event_type, path)
    for event in example_events()
    for path in ["trace_id"] + [f"payload.{n}" for n in FREE_TEXT_NAMES if hasattr(event.payload, n)]
]


def test_the_decoder_searches_every_free_text_field() -> None:
    for spec in DEFAULT_REGISTRY.all_specs():
        names = {n for n in spec.payload_type.__struct_fields__ if n in FREE_TEXT_NAMES}
        assert names <= set(spec.string_fields), spec.event_type
    assert len(FREE_TEXT) == 31


@pytest.mark.parametrize(("event_type", "path"), FREE_TEXT, ids=[f"{t}:{p}" for t, p in FREE_TEXT])
@pytest.mark.parametrize("ensure_ascii", [False, True], ids=["utf8", "ascii-escaped"])
def test_every_banned_control_character_in_every_free_text_field(
    event_type: str, path: str, ensure_ascii: bool
) -> None:
    for character in BANNED:
        doc = document(event_type)
        setter(path, f"A{character}B")(doc)
        raw = json.dumps(doc, default=json_default, ensure_ascii=ensure_ascii).encode()
        result = decode_event(raw)
        _assert_violation(
            result, event_type, f"$.{path}: control character U+{ord(character):04X} not allowed"
        )


@pytest.mark.parametrize(
    ("written", "control"),
    [
        (b"\\u0000", 0x00),
        (b"\\u001f", 0x1F),
        (b"\\u001F", 0x1F),
        (b"\\b", 0x08),
        (b"\\f", 0x0C),
        (b"\\u007f", 0x7F),
        (b"\\u007F", 0x7F),
        (b"\x7f", 0x7F),
        (b"\\\\\\u0000", 0x00),  # an escaped backslash, then an escaped NUL
    ],
)
def test_every_way_of_writing_a_banned_character(written: bytes, control: int) -> None:
    raw = encode_event(example_event(EXAMPLE_PAYLOADS[3])).replace(b"CNC", b"C" + written + b"C")
    _assert_violation(
        decode_event(raw), "order.placed", f"$.payload.title: control character U+{control:04X} not allowed"
    )


LOOK_ALIKES = [b"\\\\u0000", b"\\\\b", b"\\\\f", b"\\\\u007f", b"\\\\\\\\u0000"]
"""An escaped backslash followed by text that reads like an escape."""
ALLOWED_ESCAPES = [b"\\t", b"\\n", b"\\r", b"\\u0009", b"\\u000a", b"\\u000D", b"\\u0080", b"\\u00e9"]


@pytest.mark.parametrize("written", LOOK_ALIKES + ALLOWED_ESCAPES)
def test_text_that_only_looks_like_a_control_character_is_valid(written: bytes) -> None:
    """`\\\\u0000` is an escaped backslash followed by `u0000`; TAB, LF and CR are allowed."""
    raw = encode_event(example_event(EXAMPLE_PAYLOADS[3])).replace(b"CNC", b"C" + written + b"C")
    result = decode_event(raw)
    assert isinstance(result, Event), (raw, result)
    assert isinstance(result.payload, OrderPlaced)
    assert result.payload.title.startswith("C" + json.loads(b'"' + written + b'"'))


@pytest.mark.parametrize("character", ALLOWED_CONTROLS)
def test_tab_line_feed_and_carriage_return_are_allowed_everywhere(character: str) -> None:
    for event_type, path in FREE_TEXT:
        result = _decode(event_type, path, f"A{character}B")
        assert isinstance(result, Event), (event_type, path, result)


def test_a_control_character_in_an_enum_or_id_is_still_a_violation() -> None:
    result = _decode("member.joined", "payload.kind", "company\u0000")
    assert_failure(result, VIOLATION, "$.payload.kind")
    result = _decode("order.accepted", "payload.manufacturer_id", "50010073225\u0000")
    assert_failure(result, VIOLATION, "$.payload.manufacturer_id")


# --- failures never carry control characters -------------------------------------------------------


def test_details_and_ids_of_failures_carry_no_control_characters() -> None:
    hostile = "\u001b[31mRED\u001b]0;pwned\u0007\u0000\u009b"
    doc = document("order.placed")
    doc["payload"][hostile] = 1
    result = decode_event(dumps(doc))
    assert_failure(result, VIOLATION, "unknown field")
    assert isinstance(result, DecodeFailure)
    assert "\\u001b[31mRED" in result.detail and not any(c in result.detail for c in "\x00\x07\x1b\x9b")

    doc = document("order.placed")
    doc["event_type"] = hostile
    typed = decode_event(dumps(doc))
    assert isinstance(typed, DecodeFailure) and typed.event_type is None and typed.event_id == doc["event_id"]
    assert not any(c in typed.detail for c in "\x00\x07\x1b\x9b"), typed.detail


@pytest.mark.parametrize("key", ["k" * 100_000, "\u001b" * 10 + "k" * 100_000, "\u0000" * 30_000])
def test_details_of_huge_unknown_keys_are_short(key: str) -> None:
    doc = document("order.placed")
    doc["payload"][key] = 1
    result = decode_event(dumps(doc))
    assert_failure(result, VIOLATION, "unknown field")
    assert isinstance(result, DecodeFailure) and len(result.detail) <= 500, len(result.detail)


# --- the stream's conversion (streams/rules.py) ----------------------------------------------------


def test_rules_turn_an_occurred_at_without_a_utc_date_into_a_violation() -> None:
    """Events built in code bypass the decoder; converting year 9999 at -05:00 to UTC overflows."""
    base = example_event(EXAMPLE_PAYLOADS[0])
    for moment in (
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
    ):
        outcome = apply_event(None, Event(**{**_fields(base), "occurred_at": moment}))
        assert isinstance(outcome, Violation), outcome
        assert outcome.reason == VIOLATION and "occurred_at" in outcome.detail
    inside = Event(**{**_fields(base), "occurred_at": datetime(2099, 12, 31, 23, 59, tzinfo=UTC)})
    assert not isinstance(apply_event(None, inside), Violation)


def _fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__struct_fields__}
