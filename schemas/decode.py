"""Raw record value -> typed `Event`, or a `DecodeFailure` classified by the contract's reasons.

`decode_event` is the one entry point. It never raises: every input, however broken, yields either
an `Event` satisfying every rule of contract v1 or a `DecodeFailure` whose `reason` is `malformed`,
`unknown_event_type`, `unsupported_version` or `schema_violation` and whose `detail` names the field
path (`$.payload.budget_rub: more than 2 decimal places`).

Order of checks (the first failing one decides the reason):
1. size (256 KiB), UTF-8 BOM, nesting depth (32) - on the raw bytes, before any parse;
2. one typed decode of the envelope (payload kept raw): JSON syntax, UTF-8, envelope fields;
3. registry lookup of `(event_type, schema_version)`;
4. `occurred_at` (RFC 3339, in UTC within 2000-01-01T00:00:00Z..2099-12-31T23:59:59Z), `source`,
   `company_id` check digits, topic of the family;
5. typed decode of the payload;
6. duplicate keys and money written as strings, which typed decoding cannot see, found by counting
   the quote characters of the text (`quotes_add_up`): a valid value has two per key, two per string
   value and one per escaped quote, and the decode says how many keys and strings it found; explicit
   nulls of absent optional fields are matched by key. Only when the count still does not add up is
   the text scanned for duplicate keys (`schemas.rawchecks.malformation`) and the payload's money
   fields read raw, to tell a duplicate key from money given as a string;
7. control characters in strings (U+0000-U+001F but TAB, LF, CR, and U+007F, raw or escaped): a
   value with neither a backslash nor a DEL byte has none (JSON forbids them raw), so only such
   values have their decoded strings searched;
8. money range and decimals, dates within 2000-01-01..2099-12-31, INN check digits of payload
   fields, non-empty `member.updated`.
Any failure at 2-8 is re-checked for bad UTF-8 and duplicate keys first, so `malformed` wins. Every
step is linear in the value (`bench/bench_hostile.py` measures the worst cases at the size limit).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
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
    unparsable,
)
from schemas.inn import is_valid_inn
from schemas.rawchecks import MAX_NESTING_DEPTH, MAX_VALUE_BYTES, UTF8_BOM, brackets_too_deep, malformation
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
_PAYLOAD_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_CONTROL_ESCAPE = re.compile(rb"\\(?:u00[01]|u007[fF]|[bf])")
"""An escape that may stand for a banned control character (or be the end of `\\\\u0000`, an
escaped backslash before text: the decoded strings then clear it)."""
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EARLIEST = datetime(fields.EARLIEST_DATE.year, 1, 1, tzinfo=UTC)
_LATEST = datetime(fields.LATEST_DATE.year, 12, 31, 23, 59, 59, tzinfo=UTC)
_FIRST_YEAR, _LAST_YEAR = _EARLIEST.year, _LATEST.year
"""Strictly between these years a time is in range whatever its offset (offsets are under a day)."""
TIME_RANGE = "2000-01-01T00:00:00Z..2099-12-31T23:59:59Z"
nesting_too_deep = brackets_too_deep
"""The nesting check of a value whose opening brackets `_decode` counted (more than 32: it does not
count them again), by this name so that `bench/bench_decode.py` can switch it off."""


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
        return failure(MALFORMED, f"$: undecodable ({type(exc).__name__}: {exc})")


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
    if isinstance(occurred_at, str):
        return _violation(raw, wire, occurred_at)
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

    if not quotes_add_up(raw, spec, payload, wire) and (hidden := _hidden_problem(raw, spec, wire)):
        return hidden
    problem = _payload_problem(spec, payload)
    if problem is None and (0x5C in raw or 0x7F in raw):  # a backslash or DEL (int search: memchr)
        problem = _control_problem(raw, spec, payload, wire)
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


def _parse_occurred_at(raw_value: msgspec.Raw) -> datetime | str:
    """The timestamp, or the detail of why it is not an RFC 3339 string with an offset, in UTC
    within the contract's range.

    msgspec's parser is RFC 3339 except that it also takes `+0300`; the offset's colon is checked on
    the raw text. The range is compared as aware datetimes: no conversion to UTC, so no overflow at
    year 9999 with a negative offset.
    """
    try:
        value: datetime = _TIMESTAMP_DECODER.decode(raw_value)
    except msgspec.DecodeError:
        return f"$.occurred_at: {NOT_RFC3339}"
    text = bytes(raw_value)
    if text[-2] not in b"Zz" and text[-4] != _COLON:
        return f"$.occurred_at: {NOT_RFC3339}"
    if not _FIRST_YEAR < value.year < _LAST_YEAR and not _EARLIEST <= value <= _LATEST:
        return f"$.occurred_at: {text[1:-1].decode()} is outside {TIME_RANGE} (in UTC)"
    return value


def _hidden_problem(raw: bytes, spec: PayloadSpec, wire: WireEnvelope) -> DecodeFailure | None:
    """Why the quotes of a decoded value do not add up: a duplicate key (or bad UTF-8 in what the
    decode skipped), money written as a string, or nothing (explicit nulls)."""
    problem = malformation(raw, parsed=True)
    if problem is not None:
        return failure(MALFORMED, problem, wire.event_id, wire.event_type)
    quoted = _money_given_as_string(spec, wire.payload)
    if quoted is not None:
        detail = f"$.payload.{quoted}: money must be a JSON number, not a string"
        return failure(SCHEMA_VIOLATION, detail, wire.event_id, wire.event_type)
    return None


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
    # a backslash at all (int search: memchr), then before a quote; `find`, not `in`: CPython 3.11's
    # `bytes in bytes` first tries the needle as an integer and formats a TypeError (~1.8k instructions)
    if 0x5C in raw and raw.find(b'\\"') != -1:
        if raw.find(b"\\\\") != -1:
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
        matches = pattern.finditer(raw)  # stops at a second match: a key written twice
        if next(matches, None) is not None:
            if next(matches, None) is not None:
                return None
            found += 1
    return found


def _control_problem(raw: bytes, spec: PayloadSpec, payload: Payload, wire: WireEnvelope) -> str | None:
    """The first string field holding a banned control character, as a detail.

    JSON forbids them raw (msgspec rejects such text), so only a value with a backslash (an
    escape) or a DEL byte can hold one: the caller searches for those two bytes, and this function
    searches the decoded strings only when an escape may stand for one. Other envelope strings are
    patterns or registry names that cannot hold one.
    """
    if 0x7F not in raw and _CONTROL_ESCAPE.search(raw) is None:
        return None
    strings = [("$.trace_id", wire.trace_id)]
    strings += [(f"$.payload.{name}", getattr(payload, name)) for name in spec.string_fields]
    for path, value in strings:
        if type(value) is str and (found := _CONTROL.search(value)) is not None:
            return f"{path}: control character U+{ord(found.group()):04X} not allowed"
    return None


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
    for name in spec.date_fields:
        value = getattr(payload, name)
        if value is not None and not _FIRST_YEAR <= value.year <= _LAST_YEAR:
            return f"$.payload.{name}: {value.isoformat()} is outside {fields.DATE_RANGE}"
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
    """The money field written as a JSON string in the payload, if any (the payload decoded, so its
    keys are the struct's few fields; values stay raw: no number conversion)."""
    if not spec.money_fields:
        return None
    members = _PAYLOAD_MEMBERS.decode(raw_payload)
    for name, _ in spec.money_fields:
        value = members.get(name)
        if value is not None and bytes(value)[:1] == b'"':
            return name
    return None


def _violation(raw: bytes, wire: WireEnvelope, detail: str) -> DecodeFailure:
    problem = malformation(raw, parsed=True)
    if problem is not None:
        return failure(MALFORMED, problem, wire.event_id, wire.event_type)
    return failure(SCHEMA_VIOLATION, detail, wire.event_id, wire.event_type)
