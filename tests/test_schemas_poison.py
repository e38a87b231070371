"""Poison pills: decode_event classifies every hostile value and never raises."""

from __future__ import annotations

import random

import pytest
from schemas_documents import strict_parse

from schemas.decode import DecodeFailure, decode_event
from schemas.encode import encode_event
from schemas.events import Event
from schemas.examples import EXAMPLE_PAYLOADS, example_event, example_events
from schemas.rawchecks import MAX_NESTING_DEPTH, MAX_VALUE_BYTES, nesting_too_deep
from schemas.reasons import DECODE_REASONS, DeadLetterReason

MALFORMED = DeadLetterReason.MALFORMED
VALID = encode_event(example_event(EXAMPLE_PAYLOADS[3]))


def _in_payload(fragment: bytes) -> bytes:
    """VALID with `"x": <fragment>` added to the payload."""
    return VALID.replace(b'"payload":{', b'"payload":{"x":' + fragment + b",", 1)


PILLS: dict[str, tuple[bytes, DeadLetterReason, str]] = {
    "invalid utf-8 at start": (b"\xff" + VALID, MALFORMED, "not valid UTF-8 (byte 0xff at offset 0)"),
    "invalid utf-8 in a string": (VALID.replace(b"CNC", b"C\xc3\x28C"), MALFORMED, "not valid UTF-8"),
    "invalid utf-8 after a payload error": (
        VALID.replace(b'"order_id"', b'"x":1,"order_id"').replace(b"CNC", b"C\xffC"),
        MALFORMED,
        "not valid UTF-8",
    ),
    "overlong utf-8": (VALID.replace(b"CNC", b"\xc0\xafNC"), MALFORMED, "not valid UTF-8"),
    "utf-16": (VALID.decode().encode("utf-16"), MALFORMED, "$:"),
    "10 MB value": (b'{"a":"' + b"x" * 10_000_000 + b'"}', MALFORMED, "over the 262144-byte limit"),
    "10 MB of invalid bytes": (b"\xff" * 10_000_000, MALFORMED, "over the 262144-byte limit"),
    "100,000-deep arrays": (b"[" * 100_000 + b"]" * 100_000, MALFORMED, "nesting deeper than 32"),
    "40,000-deep objects": (b'{"a":' * 40_000 + b"1" + b"}" * 40_000, MALFORMED, "nesting deeper than 32"),
    "deep nesting in the payload": (_in_payload(b"[" * 40 + b"]" * 40), MALFORMED, "nesting deeper than 32"),
    "unclosed deep nesting": (b"[" * 100_000, MALFORMED, "nesting deeper than 32"),
    "million-digit number": (b"1" * 1_000_000, MALFORMED, "over the 262144-byte limit"),
    "200k-digit money": (
        VALID.replace(b"1250000.50", b"9" * 200_000),
        DeadLetterReason.SCHEMA_VIOLATION,
        "$.payload.budget_rub: more than 10^13",
    ),
    "200k-decimal money": (
        VALID.replace(b"1250000.50", b"0." + b"1" * 200_000),
        DeadLetterReason.SCHEMA_VIOLATION,
        "$.payload.budget_rub: more than 2 decimal places",
    ),
    "200k-digit quantity": (
        VALID.replace(b'"quantity":500', b'"quantity":' + b"9" * 200_000),
        DeadLetterReason.SCHEMA_VIOLATION,
        "$.payload.quantity",
    ),
    "200k-digit version": (
        VALID.replace(b'"schema_version":1', b'"schema_version":' + b"7" * 200_000),
        DeadLetterReason.UNSUPPORTED_VERSION,
        "$.schema_version",
    ),
    "huge exponent": (
        VALID.replace(b"1250000.50", b"1e999999999"),
        DeadLetterReason.SCHEMA_VIOLATION,
        "$.payload.budget_rub",
    ),
    "duplicate keys": (
        VALID.replace(b'"source":', b'"source":"a","source":'),
        MALFORMED,
        'duplicate key "source"',
    ),
    "byte order mark": (b"\xef\xbb\xbf" + VALID, MALFORMED, "byte order mark"),
    "empty": (b"", MALFORMED, "not JSON"),
    "whitespace": (b" \n\t", MALFORMED, "not JSON"),
    "null": (b"null", MALFORMED, "not a JSON object (got null)"),
    "array": (b"[1,2]", MALFORMED, "not a JSON object (got array)"),
    "string": (b'"order.placed"', MALFORMED, "not a JSON object (got string)"),
    "number": (b"12", MALFORMED, "not a JSON object (got number)"),
    "truncated": (VALID[:-5], MALFORMED, "not JSON"),
    "trailing garbage": (VALID + b"x", MALFORMED, "not JSON"),
    "two objects": (VALID + VALID, MALFORMED, "not JSON"),
    "NaN": (VALID.replace(b"1250000.50", b"NaN"), MALFORMED, "not JSON"),
    "Infinity": (VALID.replace(b"1250000.50", b"Infinity"), MALFORMED, "not JSON"),
    "lone surrogate": (VALID.replace(b"CNC", b"\\ud800"), MALFORMED, "not JSON"),
    "control character in string": (VALID.replace(b"CNC", b"C\x01C"), MALFORMED, "not JSON"),
    "single quotes": (VALID.replace(b'"source"', b"'source'"), MALFORMED, "not JSON"),
    "unbalanced brackets": (b"{" * 40 + b"]" * 40, MALFORMED, "$:"),
    "unterminated string with brackets": (b'{"a":"' + b"[" * 100, MALFORMED, "$:"),
}


@pytest.mark.parametrize(("raw", "reason", "detail"), PILLS.values(), ids=PILLS.keys())
def test_poison_pill_is_classified(raw: bytes, reason: DeadLetterReason, detail: str) -> None:
    result = decode_event(raw, topic="mic.orders")
    assert isinstance(result, DecodeFailure), result
    assert result.reason == reason, result
    assert detail in result.detail, result.detail


def test_values_at_the_size_limit_are_parsed_and_over_it_are_not() -> None:
    padding = MAX_VALUE_BYTES - len(VALID) - len(',"trace_id":""')
    at_limit = VALID[:-1] + b',"trace_id":"' + b"t" * padding + b'"}'
    assert len(at_limit) == MAX_VALUE_BYTES
    result = decode_event(at_limit)
    assert isinstance(result, DecodeFailure) and "$.trace_id" in result.detail  # parsed: too long a trace
    over = decode_event(at_limit[:-2] + b't"}')
    assert isinstance(over, DecodeFailure) and "over the 262144-byte limit" in over.detail


def test_nesting_check_ignores_brackets_inside_strings() -> None:
    many_brackets = VALID.replace(b"CNC", b"[{" * 100 + b'\\"' + b"}]" * 100)
    assert many_brackets.count(b"[") > MAX_NESTING_DEPTH
    assert not nesting_too_deep(many_brackets)
    assert isinstance(decode_event(many_brackets), Event)


def test_nesting_limit_is_exact() -> None:
    assert not nesting_too_deep(b"[" * MAX_NESTING_DEPTH + b"]" * MAX_NESTING_DEPTH)
    assert nesting_too_deep(b"[" * (MAX_NESTING_DEPTH + 1) + b"]" * (MAX_NESTING_DEPTH + 1))
    wide = b"[" + b"[[]]," * 1000 + b"[]]"
    assert not nesting_too_deep(wide)


def _malformed(raw: bytes) -> bool:
    try:
        return nesting_too_deep(raw) or not isinstance(strict_parse(raw), dict)
    except ValueError:
        return True


def test_mutated_events_never_raise_and_get_a_decode_reason() -> None:
    rng = random.Random(20201)
    originals = [encode_event(event) for event in example_events()]
    alphabet = b'{}[]":,\\0123456789.eE-+ntrufalsxyz\x00\xff\xc3 '
    outcomes: set[object] = set()
    for _ in range(20_000):
        raw = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(raw))
            action = rng.random()
            if action < 0.4:
                raw[position] = rng.choice(alphabet)
            elif action < 0.7:
                del raw[position]
            else:
                raw.insert(position, rng.choice(alphabet))
        result = decode_event(bytes(raw), topic="mic.orders")
        if isinstance(result, DecodeFailure):
            assert result.reason in DECODE_REASONS
            assert result.detail.startswith("$")
            outcomes.add(result.reason)
        else:
            assert isinstance(result, Event)
            outcomes.add("event")
        # an independent strict parse agrees on what is malformed
        assert (isinstance(result, DecodeFailure) and result.reason == MALFORMED) == _malformed(bytes(raw)), (
            result
        )
    assert {MALFORMED, DeadLetterReason.SCHEMA_VIOLATION, DeadLetterReason.UNKNOWN_EVENT_TYPE} <= outcomes


def test_non_bytes_input_does_not_raise() -> None:
    result = decode_event(None)  # type: ignore[arg-type]
    assert isinstance(result, DecodeFailure) and result.reason == MALFORMED
