"""Raw record value -> typed `Event`, or a `DecodeFailure` classified by the contract's reasons.

`decode_event` is the one entry point. It never raises: every input, however broken, yields either
an `Event` satisfying every rule of contract v1 or a `DecodeFailure` whose `reason` is `malformed`,
`unknown_event_type`, `unsupported_version` or `schema_violation` and whose `detail` names the field
path (`$.payload.budget_rub: more than 2 decimal places`).

Order of checks (the first failing one decides the reason):
1. size (256 KiB), UTF-8 BOM, nesting depth (32) - on the raw bytes, before any parse;
2. one typed decode of the envelope (payload kept raw): JSON syntax, UTF-8, envelope fields;
3. registry lookup of `(event_type, schema_version)`;
4. `occurred_at`, `source`, `company_id` check digits, topic of the family;
5. typed decode of the payload;
6. duplicate keys and money written as strings, which typed decoding cannot see, found by counting
   the quote characters of the text (`quotes_add_up`): a valid value has two per key, two per string
   value and one per escaped quote, and the decode says how many keys and strings it found; explicit
   nulls of absent optional fields are matched by key. Only when the count still does not add up is
   the text re-parsed strictly (about 5 µs) to tell a duplicate key from money given as a string;
7. money range and decimals, INN check digits of payload fields, non-empty `member.updated`.
Any failure at 2-7 is re-checked for duplicate keys and non-JSON first, so `malformed` wins.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Annotated

import msgspec
import msgspec.structs

from schemas import fields
from schemas.events import Event, Payload
from schemas.failures import (
    MALFORMED,
    NOT_RFC3339,
    SCHEMA_VIOLATION,
    DecodeFailure,
    classify_envelope_failure,
    describe_validation_error,
    failure,
    malformation,
    unparsable,
)
from schemas.inn import is_valid_inn
from schemas.rawchecks import MAX_NESTING_DEPTH, MAX_VALUE_BYTES, UTF8_BOM, nesting_too_deep
from schemas.registry import DEFAULT_REGISTRY, PayloadSpec, Registry, null_key_pattern

__all__ = ["DecodeFailure", "WireEnvelope", "check_money", "decode_event", "quotes_add_up"]


class WireEnvelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The envelope as it is on the wire; payload and `occurred_at` stay raw until checked."""

    event_id: fields.EventId
    event_type: fields.EventType
    schema_version: fields.SchemaVersion
    occurred_at: msgspec.Raw
    source: fields.Source
    company_id: fields.Inn
    payload: msgspec.Raw
    trace_id: fields.TraceId | None = None


ENVELOPE_KEYS = 7
"""Keys every valid envelope has (all but `trace_id`)."""
ENVELOPE_STRINGS = 5
"""String values every valid envelope has (`event_id`, `event_type`, `occurred_at`, `source`,
`company_id`)."""

_ENVELOPE_DECODER = msgspec.json.Decoder(WireEnvelope)
_TIMESTAMP_DECODER = msgspec.json.Decoder(Annotated[datetime, msgspec.Meta(tz=True)])
_CENT = Decimal("0.01")
_ZERO = Decimal("0.00")
_COLON = ord(":")
_SOURCE = re.compile(fields.SOURCE_PATTERN)
_INN_SHAPE = re.compile(fields.INN_PATTERN)
_TRACE_NULL = null_key_pattern("trace_id")


def decode_event(
    raw: bytes, *, topic: str | None = None, registry: Registry = DEFAULT_REGISTRY
) -> Event | DecodeFailure:
    """Decode and validate one record value against the contract. Never raises.

    `topic` is the logical input topic the value was read from (`mic.orders`); when given, an event
    type of another family is a `schema_violation`. `registry` says which types and versions exist
    (default: contract v1).
    """
    try:
        return _decode(raw, topic, registry)
    except Exception as exc:  # the promise is "never raises": anything unforeseen is undecodable
        return DecodeFailure(reason=MALFORMED, detail=f"$: undecodable ({type(exc).__name__}: {exc})"[:500])


def _decode(raw: bytes, topic: str | None, registry: Registry) -> Event | DecodeFailure:
    if len(raw) > MAX_VALUE_BYTES:
        return DecodeFailure(
            reason=MALFORMED, detail=f"$: value is {len(raw)} bytes, over the {MAX_VALUE_BYTES}-byte limit"
        )
    if raw.startswith(UTF8_BOM):
        return DecodeFailure(reason=MALFORMED, detail="$: starts with a UTF-8 byte order mark")
    if raw.count(b"{") + raw.count(b"[") > MAX_NESTING_DEPTH and nesting_too_deep(raw):
        detail = f"$: nesting deeper than {MAX_NESTING_DEPTH} levels or unbalanced brackets"
        return DecodeFailure(reason=MALFORMED, detail=detail)
    try:
        wire = _ENVELOPE_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        return classify_envelope_failure(raw, registry, describe_validation_error(str(exc)))
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return unparsable(raw, exc)

    spec = registry.lookup(wire.event_type, wire.schema_version)
    if spec is None:
        return classify_envelope_failure(raw, registry, "")
    occurred_at = _parse_occurred_at(wire.occurred_at)
    if occurred_at is None:
        return _violation(raw, wire, f"$.occurred_at: {NOT_RFC3339}")
    if not _valid_source(wire.source):
        return _violation(raw, wire, "$.source: must be 1-64 characters of [a-z0-9_.-]")
    if not is_valid_inn(wire.company_id):
        return _violation(raw, wire, f"$.company_id: {_inn_problem(wire.company_id)}")
    if topic is not None and topic != spec.family.topic:
        return _violation(
            raw, wire, f"$.event_type: {wire.event_type} belongs on {spec.family.topic}, not on {topic}"
        )
    try:
        payload = spec.decoder.decode(wire.payload)
    except msgspec.ValidationError as exc:
        return _violation(raw, wire, describe_validation_error(str(exc), prefix="$.payload"))
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # skipping the raw payload checks less
        return unparsable(raw, exc)

    if not quotes_add_up(raw, spec, payload, wire):
        problem = malformation(raw)
        if problem is not None:
            return failure(MALFORMED, problem, wire.event_id, wire.event_type)
        quoted = _money_given_as_string(spec, wire.payload)
        if quoted is not None:
            return failure(
                SCHEMA_VIOLATION,
                f"$.payload.{quoted}: money must be a JSON number, not a string",
                wire.event_id,
                wire.event_type,
            )
    problem = _payload_problem(spec, payload)
    if problem:
        return _violation(raw, wire, problem)
    return Event(
        event_id=wire.event_id,
        event_type=wire.event_type,
        schema_version=wire.schema_version,
        occurred_at=occurred_at,
        source=wire.source,
        company_id=wire.company_id,
        payload=payload,
        trace_id=wire.trace_id,
    )


def _parse_occurred_at(raw_value: msgspec.Raw) -> datetime | None:
    """The timestamp, or None unless it is an RFC 3339 string with an offset.

    msgspec's parser is RFC 3339 except that it also takes `+0300`; the offset's colon is checked on
    the raw text.
    """
    try:
        value: datetime = _TIMESTAMP_DECODER.decode(raw_value)
    except msgspec.DecodeError:
        return None
    text = bytes(raw_value)
    if text[-2] not in b"Zz" and text[-4] != _COLON:
        return None
    return value


@lru_cache(maxsize=4096)
def _valid_source(source: str) -> bool:
    return _SOURCE.match(source) is not None


def _inn_problem(value: str) -> str:
    if _INN_SHAPE.match(value) is None:
        return "not an INN (10 or 12 digits)"
    return "INN check digits do not match"


def quotes_add_up(raw: bytes, spec: PayloadSpec, payload: Payload, wire: WireEnvelope) -> bool:
    """True when the quote characters of `raw` prove it has no duplicate key and no money string.

    A value has two quotes per key, two per string value and one per escaped quote in text. The
    typed decode says how many keys and string values it found; more quotes than that mean a
    duplicate key, money written as a string or an explicit null the decode cannot see (false is
    then "look closer", not "invalid"). Escaped quotes are counted only when no `\\\\` can fake them.
    """
    keys_and_strings = spec.required_keys + spec.required_strings + ENVELOPE_KEYS + ENVELOPE_STRINGS
    if wire.trace_id is not None:
        keys_and_strings += 2
    for name, default, is_string in spec.variable_fields:
        value = getattr(payload, name)
        if value is default:
            continue
        if default is not msgspec.NODEFAULT:
            keys_and_strings += 1
        if is_string and value is not None:
            keys_and_strings += 1
    expected = 2 * keys_and_strings
    quotes = raw.count(b'"')
    if quotes == expected:
        return True
    if b'\\"' in raw:
        if b"\\\\" in raw:
            return False
        quotes -= raw.count(b'\\"')
        if quotes == expected:
            return True
    if quotes < expected:
        return False
    nulls = _explicit_nulls(raw, spec, payload, wire)
    return nulls is not None and quotes == expected + 2 * nulls


def _explicit_nulls(raw: bytes, spec: PayloadSpec, payload: Payload, wire: WireEnvelope) -> int | None:
    """How many optional fields the decode saw as absent are written `"key": null`; None when such
    a key is written twice (a duplicate)."""
    patterns = [pattern for name, pattern in spec.null_key_patterns if getattr(payload, name) is None]
    if wire.trace_id is None:
        patterns.append(_TRACE_NULL)
    found = 0
    for pattern in patterns:
        count = len(pattern.findall(raw))
        if count > 1:
            return None
        found += count
    return found


def _payload_problem(spec: PayloadSpec, payload: Payload) -> str | None:
    """The first rule the typed decode could not check that `payload` breaks, as a detail."""
    for name, positive in spec.money_fields:
        value = getattr(payload, name)
        if value is None:
            continue
        if value.is_finite() and (value > 0 if positive else value >= 0) and value <= fields.MAX_MONEY:
            cents = value.quantize(_CENT)  # exact: at most 16 digits here
            if cents == value:
                msgspec.structs.force_setattr(payload, name, cents if cents else _ZERO)
                continue
        problem, _ = check_money(value, positive=positive)
        return f"$.payload.{name}: {problem}"
    for name in spec.inn_fields:
        value = getattr(payload, name)
        if value is not None and not is_valid_inn(value):
            return f"$.payload.{name}: {_inn_problem(value)}"
    if spec.requires_any_field and all(getattr(payload, n) is d for n, d in spec.optional_fields):
        return f"$.payload: {spec.event_type} must change at least one field"
    return None


def check_money(value: Decimal, *, positive: bool) -> tuple[str | None, Decimal]:
    """`(problem, value with exactly 2 decimals)`; problem is None when `value` is valid money."""
    if not value.is_finite():
        return "not a finite number", value
    if positive and value <= 0:
        return "must be greater than 0", value
    if value < 0:
        return "must not be negative", value
    if value > fields.MAX_MONEY:
        return "more than 10^13", value
    cents = value.quantize(_CENT)
    if cents != value:
        return "more than 2 decimal places", value
    return None, cents if cents else _ZERO


def _money_given_as_string(spec: PayloadSpec, raw_payload: msgspec.Raw) -> str | None:
    """The money field written as a JSON string in the payload, if any."""
    if not spec.money_fields:
        return None
    decoded = msgspec.json.decode(raw_payload)
    for name, _ in spec.money_fields:
        if isinstance(decoded.get(name), str):
            return name
    return None


def _violation(raw: bytes, wire: WireEnvelope, detail: str) -> DecodeFailure:
    problem = malformation(raw)
    if problem is not None:
        return failure(MALFORMED, problem, wire.event_id, wire.event_type)
    return failure(SCHEMA_VIOLATION, detail, wire.event_id, wire.event_type)
