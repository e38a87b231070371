"""decode_event / encode_event: round trips and every rule of contract v1, rule by rule."""

from __future__ import annotations

import json
from datetime import UTC
from decimal import Decimal

import msgspec
import pytest
from schemas_documents import (
    MALFORMED,
    UNKNOWN_TYPE,
    UNSUPPORTED,
    VIOLATION,
    assert_failure,
    decode_mutated,
    document,
    dumps,
    json_default,
    setter,
)

from schemas.decode import DecodeFailure, decode_event
from schemas.encode import encode_event, event_key
from schemas.events import Event, MemberUpdated, OrderCancelled, OrderPlaced, Payload
from schemas.examples import COMPANY_INN, EXAMPLE_PAYLOADS, example_event, example_events
from schemas.registry import DEFAULT_REGISTRY

# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("event", example_events(), ids=lambda e: e.event_type)
def test_every_type_round_trips_on_its_topic(event: Event) -> None:
    raw = encode_event(event)
    decoded = decode_event(raw, topic=event.family.topic)
    assert decoded == event
    assert isinstance(decoded, Event)
    assert type(decoded.payload) is type(event.payload)
    normalised = encode_event(decoded)  # money now has exactly two decimals
    assert decode_event(normalised) == event
    assert encode_event(decode_event(normalised)) == normalised  # type: ignore[arg-type]


@pytest.mark.parametrize("event", example_events(), ids=lambda e: e.event_type)
def test_round_trip_with_trace_id_and_utc_time(event: Event) -> None:
    event = msgspec.structs.replace(
        event,
        trace_id="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        occurred_at=event.occurred_at.astimezone(UTC),
    )
    raw = encode_event(event)
    assert b'+00:00"' not in raw and b'Z"' in raw
    assert decode_event(raw) == event


def test_registry_has_the_fourteen_contract_types_at_version_1() -> None:
    assert len(DEFAULT_REGISTRY.all_specs()) == 14
    assert {payload.__class__ for payload in EXAMPLE_PAYLOADS} == {
        spec.payload_type for spec in DEFAULT_REGISTRY.all_specs()
    }
    assert all(spec.schema_version == 1 for spec in DEFAULT_REGISTRY.all_specs())


def test_encoding_writes_money_as_numbers_dates_iso_and_keeps_the_offset() -> None:
    raw = encode_event(example_event(EXAMPLE_PAYLOADS[3]))
    assert b'"budget_rub":1250000.50' in raw
    assert b'"deadline":"2020-12-01"' in raw
    assert b'"occurred_at":"2020-09-24T10:15:00+03:00"' in raw
    assert b"trace_id" not in raw  # absent optional fields are left out
    assert event_key(example_event(EXAMPLE_PAYLOADS[3])) == COMPANY_INN.encode()


def test_decoded_money_is_an_exact_decimal_with_two_places() -> None:
    result = decode_mutated("order.placed", setter("payload.budget_rub", Decimal("0.10")))
    assert isinstance(result, Event) and isinstance(result.payload, OrderPlaced)
    assert result.payload.budget_rub == Decimal("0.10")
    assert str(result.payload.budget_rub) == "0.10"
    big = decode_mutated("order.placed", setter("payload.budget_rub", Decimal("9999999999999.99")))
    assert isinstance(big, Event) and isinstance(big.payload, OrderPlaced)
    assert str(big.payload.budget_rub) == "9999999999999.99"


def test_money_with_trailing_zeros_or_exponent_is_normalised_to_cents() -> None:
    raw = dumps(document("order.placed")).replace(b"1250000.5", b"1250000.500")
    assert b"1250000.500" in raw
    result = decode_event(raw)
    assert isinstance(result, Event) and isinstance(result.payload, OrderPlaced)
    assert str(result.payload.budget_rub) == "1250000.50"
    exponent = decode_event(raw.replace(b"1250000.500", b"1.5e3"))
    assert isinstance(exponent, Event) and isinstance(exponent.payload, OrderPlaced)
    assert str(exponent.payload.budget_rub) == "1500.00"


def test_pretty_printed_json_is_accepted() -> None:
    doc = document("order.placed")
    raw = json.dumps(doc, default=json_default, indent=2).encode()
    assert isinstance(decode_event(raw), Event)


def test_escaped_non_ascii_text_is_accepted() -> None:
    doc = document("member.joined")
    doc["payload"]["name"] = "ООО «Прототип»"
    assert isinstance(decode_event(json.dumps(doc, default=json_default, ensure_ascii=True).encode()), Event)


def test_occurred_at_with_escaped_characters_is_refused() -> None:
    raw = encode_event(example_event(EXAMPLE_PAYLOADS[3]))
    escaped = raw.replace(b"10:15:00+03:00", b"10:15:00+03\\u003a00")
    assert escaped != raw
    assert_failure(decode_event(escaped), VIOLATION, "$.occurred_at: not an RFC 3339")


def test_occurred_at_keeps_its_offset() -> None:
    result = decode_mutated("order.placed", setter("occurred_at", "2020-09-24T07:15:00.5-05:30"))
    assert isinstance(result, Event)
    offset = result.occurred_at.utcoffset()
    assert offset is not None and offset.total_seconds() == -5.5 * 3600
    assert b'"2020-09-24T07:15:00.500000-05:30"' in encode_event(result)


def test_member_updated_distinguishes_null_state_corporation_from_absent() -> None:
    cleared = decode_mutated("member.updated", setter("payload", {"state_corporation": None}))
    assert isinstance(cleared, Event) and isinstance(cleared.payload, MemberUpdated)
    assert cleared.payload.changes() == {"state_corporation": None}
    assert b'"payload":{"state_corporation":null}' in encode_event(cleared)
    renamed = decode_mutated("member.updated", setter("payload", {"name": "New name", "size": None}))
    assert isinstance(renamed, Event) and isinstance(renamed.payload, MemberUpdated)
    assert renamed.payload.changes() == {"name": "New name"}
    assert renamed.payload.state_corporation is msgspec.UNSET


def test_money_as_string_is_caught_when_the_payload_has_escapes() -> None:
    doc = document("order.placed")
    doc["payload"]["title"] = "Фрезеровка корпусов"
    doc["payload"]["budget_rub"] = "100.00"
    raw = json.dumps(doc, default=json_default, ensure_ascii=True).encode()
    assert b"\\u" in raw
    assert_failure(decode_event(raw), VIOLATION, "$.payload.budget_rub: money must be a JSON number")
    compact = encode_event(example_event(EXAMPLE_PAYLOADS[3]))
    escaped_key = compact.replace(b'"budget_rub":1250000.50', b'"budget\\u005frub":"5"')
    assert escaped_key != compact
    assert_failure(decode_event(escaped_key), VIOLATION, "$.payload.budget_rub: money must be a JSON number")


def test_money_as_string_with_whitespace_is_caught() -> None:
    raw = json.dumps(document("order.placed"), default=json_default, indent=1).encode()
    raw = raw.replace(b'"budget_rub": 1250000.5', b'"budget_rub" :\n "1250000.5"')
    assert b'"budget_rub" :\n "' in raw
    assert_failure(decode_event(raw), VIOLATION, "money must be a JSON number")


# --- topics ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", example_events(), ids=lambda e: e.event_type)
def test_a_type_on_another_familys_topic_is_a_violation(event: Event) -> None:
    for topic in ("mic.membership", "mic.orders", "mic.patents", "mic.factoring", "mic.other"):
        result = decode_event(encode_event(event), topic=topic)
        if topic == event.family.topic:
            assert isinstance(result, Event)
        else:
            assert_failure(
                result, VIOLATION, f"$.event_type: {event.event_type} belongs on {event.family.topic}"
            )


# --- duplicate keys ----------------------------------------------------------------------------------


def _with_duplicate(raw: bytes, key: bytes, value: bytes) -> bytes:
    return raw.replace(b'"' + key + b'":', b'"' + key + b'":' + value + b',"' + key + b'":', 1)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"source", b'"other"'),
        (b"event_id", b'"00000000-0000-4000-8000-000000000000"'),
        (b"quantity", b"7"),
        (b"budget_rub", b"1.00"),
        (b"title", b'"first"'),
        (b"payload", b"{}"),
    ],
)
def test_duplicate_keys_are_malformed(key: bytes, value: bytes) -> None:
    raw = _with_duplicate(encode_event(example_event(EXAMPLE_PAYLOADS[3])), key, value)
    assert_failure(decode_event(raw), MALFORMED, f'duplicate key "{key.decode()}"')


def test_duplicate_keys_win_over_other_failures() -> None:
    raw = _with_duplicate(encode_event(example_event(EXAMPLE_PAYLOADS[3])), b"source", b'"x"')
    assert_failure(decode_event(raw.replace(b"order.placed", b"order.nope")), MALFORMED, "duplicate key")
    assert_failure(decode_event(raw.replace(b"7707083893", b"7707083894")), MALFORMED, "duplicate key")
    assert_failure(decode_event(raw, topic="mic.patents"), MALFORMED, "duplicate key")


def test_duplicate_keys_are_found_in_formatted_json_with_nulls_and_escapes() -> None:
    doc = document("order.cancelled")
    doc["trace_id"] = None
    doc["payload"]["reason"] = None
    pretty = json.dumps(doc, indent=2).encode()
    assert isinstance(decode_event(pretty), Event)
    duplicated = pretty.replace(b'"reason": null', b'"reason": null,\n    "reason" : "late"')
    assert_failure(decode_event(duplicated), MALFORMED, 'duplicate key "reason"')
    escaped = encode_event(example_event(EXAMPLE_PAYLOADS[6])).replace(
        b'"source":', b'"source":"a","sourc\\u0065":'
    )
    assert_failure(decode_event(escaped), MALFORMED, 'duplicate key "source"')
    quoted = encode_event(example_event(EXAMPLE_PAYLOADS[3])).replace(b"CNC", b'\\"CNC\\" \\u003a')
    assert isinstance(decode_event(quoted), Event)
    assert_failure(decode_event(_with_duplicate(quoted, b"title", b'"t"')), MALFORMED, "duplicate key")
    assert_failure(decode_event(_with_duplicate(quoted, b"quantity", b"5")), MALFORMED, "duplicate key")
    backslashes = quoted.replace(b"CNC", b"C\\\\N\\\\C")
    assert isinstance(decode_event(backslashes), Event)
    assert_failure(decode_event(_with_duplicate(backslashes, b"quantity", b"5")), MALFORMED, "duplicate key")


def test_explicit_nulls_are_told_apart_from_duplicates_and_money_strings() -> None:
    raw = encode_event(example_event(OrderCancelled(order_id="o-1")))
    with_nulls = raw[:-1].replace(b'"payload":{', b'"payload":{"reason":null,') + b',"trace_id":null}'
    assert isinstance(decode_event(with_nulls), Event)
    twice = with_nulls.replace(b'"reason":null', b'"reason":null,"reason" : null')
    assert_failure(decode_event(twice), MALFORMED, 'duplicate key "reason"')
    trace_twice = with_nulls.replace(b'"trace_id":null', b'"trace_id":null,"trace_id":null')
    assert_failure(decode_event(trace_twice), MALFORMED, 'duplicate key "trace_id"')
    title_mentions_null = with_nulls.replace(b'"o-1"', b'"o-1 \\"reason\\": null"')
    assert isinstance(decode_event(title_mentions_null), Event)
    order = encode_event(example_event(EXAMPLE_PAYLOADS[3]))[:-1] + b',"trace_id":null}'
    assert isinstance(decode_event(order), Event)
    money_string = order.replace(b'"budget_rub":1250000.50', b'"budget_rub":"1250000.50"')
    assert_failure(decode_event(money_string), VIOLATION, "money must be a JSON number")
    duplicate_number = order.replace(b'"quantity":500', b'"quantity":500,"quantity":5')
    assert_failure(decode_event(duplicate_number), MALFORMED, 'duplicate key "quantity"')


def test_colons_and_quotes_in_text_do_not_make_valid_events_fail() -> None:
    doc = document("order.placed")
    doc["payload"]["title"] = 'Spec: "A": 1, "B": {2}, [3] \\ done'
    doc["trace_id"] = "span:1:2"
    assert isinstance(decode_event(dumps(doc)), Event)


# --- classification details --------------------------------------------------------------------------


def test_failures_carry_the_readable_event_id_and_type() -> None:
    doc = document("order.placed")
    doc["payload"]["quantity"] = 0
    result = decode_event(dumps(doc))
    assert isinstance(result, DecodeFailure)
    assert (result.event_id, result.event_type) == (doc["event_id"], "order.placed")
    doc["event_id"] = "x" * 65
    doc["event_type"] = ["not", "a", "string"]
    result = decode_event(dumps(doc))
    assert isinstance(result, DecodeFailure)
    assert (result.reason, result.event_id, result.event_type) == (UNKNOWN_TYPE, None, None)


def test_unknown_type_wins_over_envelope_violations() -> None:
    doc = document("order.placed")
    doc["event_type"] = "order.nope"
    doc["company_id"] = "123"
    assert_failure(decode_event(dumps(doc)), UNKNOWN_TYPE, "'order.nope'")
    doc["event_type"] = "order.placed"
    doc["schema_version"] = 3
    assert_failure(decode_event(dumps(doc)), UNSUPPORTED, "(1)")


class OrderPlacedV2(Payload, frozen=True):
    """A hypothetical version 2 of `order.placed` with a currency."""

    order_id: str
    currency: str


def test_a_second_version_can_be_registered_beside_the_first() -> None:
    registry = DEFAULT_REGISTRY.copy()
    registry.register("order.placed", 2, OrderPlacedV2)
    v1 = encode_event(example_event(EXAMPLE_PAYLOADS[3]))
    v2 = encode_event(
        msgspec.structs.replace(
            example_event(EXAMPLE_PAYLOADS[3]),
            schema_version=2,
            payload=OrderPlacedV2(order_id="o", currency="RUB"),
        )
    )
    assert isinstance(decode_event(v1, registry=registry), Event)
    decoded = decode_event(v2, registry=registry)
    assert isinstance(decoded, Event) and decoded.payload == OrderPlacedV2(order_id="o", currency="RUB")
    assert_failure(decode_event(v2), UNSUPPORTED, "$.schema_version: 2")
    v1_shape_at_v2 = v1.replace(b'"schema_version":1', b'"schema_version":2')
    assert_failure(
        decode_event(v1_shape_at_v2, registry=registry), VIOLATION, "$.payload.industry: unknown field"
    )
    with pytest.raises(ValueError):
        registry.register("order.placed", 2, OrderPlacedV2)
