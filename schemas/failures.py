"""Failure results of decoding and the slow path that classifies them.

Everything here runs only for values that are not valid events (or need a closer look). It is still
linear in the value and cheap on hostile input: the checks of `schemas.rawchecks` find bad UTF-8,
bad JSON and duplicate keys, then one msgspec pass reads only the envelope's `event_type`,
`schema_version` and `event_id` (everything else skipped in C) to choose between the contract's
reasons. Details never carry control characters and stay short: they end up in terminals, logs and
SQL text columns.
"""

from __future__ import annotations

import re

import msgspec

from schemas import fields
from schemas.rawchecks import malformation, not_json, utf8_problem
from schemas.reasons import DeadLetterReason
from schemas.registry import Registry

MALFORMED = DeadLetterReason.MALFORMED
SCHEMA_VIOLATION = DeadLetterReason.SCHEMA_VIOLATION
NOT_RFC3339 = "not an RFC 3339 date-time with an offset (e.g. 2020-09-24T10:15:00+03:00)"
MAX_DETAIL_CHARS = 500
"""Longest `detail`: a longer one keeps its start and its end (where msgspec names the problem)."""

_PATTERN_MEANINGS = {
    fields.UUID_PATTERN: "not a UUID in canonical 36-character form",
    fields.RFC3339_PATTERN: NOT_RFC3339,
    fields.OCCURRED_AT_PATTERN: NOT_RFC3339,
}
_MISSING = re.compile(r"Object missing required field `(.*)`", re.DOTALL)
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`", re.DOTALL)
_REGEX = re.compile(r"Expected `str` matching regex '(.*)'", re.DOTALL)
_KINDS = {b"{": "object", b"[": "array", b'"': "string", b"t": "boolean", b"f": "boolean", b"n": "null"}
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f]")
"""C0 and C1 control characters and DEL: escape sequences of terminals, NUL of PostgreSQL."""


class _Probe(msgspec.Struct):
    """What classification reads of a value: three envelope fields, raw (absent: empty)."""

    event_id: msgspec.Raw = msgspec.Raw(b"")
    event_type: msgspec.Raw = msgspec.Raw(b"")
    schema_version: msgspec.Raw = msgspec.Raw(b"")


_PROBE = msgspec.json.Decoder(_Probe)
_STRING = msgspec.json.Decoder(str)


class DecodeFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Why a record value is not a valid event: a dead-letter reason and a human-readable detail.

    `event_id` and `event_type` are filled when the value was readable enough to show them (strings
    of at most 64 characters, without control characters, found in the top-level object), whether
    or not they are valid. `detail` has at most `MAX_DETAIL_CHARS` characters and no control
    characters (they are written as `\\u001b`).
    """

    reason: DeadLetterReason
    detail: str
    event_id: str | None = None
    event_type: str | None = None


def printable(text: str) -> str:
    """`text` with control characters escaped, cut to `MAX_DETAIL_CHARS` (start and end kept; cut
    before escaping too, so that a huge text costs nothing)."""
    escaped = _UNPRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", _clip(text))
    return _clip(escaped)


def _clip(text: str) -> str:
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    return f"{text[: MAX_DETAIL_CHARS - 120]} ... {text[-115:]}"


def _readable(value: object) -> str | None:
    if type(value) is str and len(value) <= 64 and _UNPRINTABLE.search(value) is None:
        return value
    return None


def failure(
    reason: DeadLetterReason, detail: str, event_id: object = None, event_type: object = None
) -> DecodeFailure:
    """A failure with a printable `detail`, carrying `event_id` / `event_type` only when readable."""
    return DecodeFailure(
        reason=reason,
        detail=printable(detail),
        event_id=_readable(event_id),
        event_type=_readable(event_type),
    )


def unparsable(raw: bytes, exc: Exception) -> DecodeFailure:
    """The `malformed` failure of a value the typed decoder could not parse (`exc`)."""
    problem = utf8_problem(raw)
    if problem is not None:
        return failure(MALFORMED, problem)
    if isinstance(exc, msgspec.DecodeError):
        return failure(MALFORMED, not_json(exc))
    return failure(MALFORMED, f"$: not JSON ({exc})")


def classify_envelope_failure(raw: bytes, registry: Registry, violation: str) -> DecodeFailure:
    """Classify a value whose envelope failed the typed decode or whose type/version is unknown.

    Bad UTF-8, bad JSON, duplicate keys and non-objects are `malformed`; then the `event_type` and
    `schema_version` decide between unknown type, unsupported version and (with `violation`, the
    typed decoder's complaint) a schema violation. Size and nesting must have been checked.
    """
    problem = utf8_problem(raw)
    if problem is not None:
        return failure(MALFORMED, problem)
    try:
        probe = _PROBE.decode(raw)
    except msgspec.ValidationError:  # valid so far, but not an object
        return failure(MALFORMED, malformation(raw) or f"$: not a JSON object (got {_kind(raw)})")
    except msgspec.DecodeError as exc:
        return failure(MALFORMED, not_json(exc))
    problem = malformation(raw, parsed=True)
    if problem is not None:
        return failure(MALFORMED, problem)
    event_id, event_type = _string(probe.event_id), _string(probe.event_type)
    if not probe.event_type:
        return failure(DeadLetterReason.UNKNOWN_EVENT_TYPE, "$.event_type: missing", event_id)
    if event_type is None:
        detail = f"$.event_type: expected a string, got {_kind(probe.event_type)}"
        return failure(DeadLetterReason.UNKNOWN_EVENT_TYPE, detail, event_id)
    known = registry.versions(event_type)
    if not known:
        detail = f"$.event_type: {event_type[:64]!r} is not an event type of the contract"
        return failure(DeadLetterReason.UNKNOWN_EVENT_TYPE, detail, event_id, event_type)
    version = bytes(probe.schema_version)
    if not version.isdigit() or not version.lstrip(b"0"):
        return failure(SCHEMA_VIOLATION, violation or "$: invalid envelope", event_id, event_type)
    if len(version) > 18 or int(version) not in known:
        listed = ", ".join(map(str, known))
        detail = (
            f"$.schema_version: {version[:20].decode()} is not a supported version of {event_type} ({listed})"
        )
        return failure(DeadLetterReason.UNSUPPORTED_VERSION, detail, event_id, event_type)
    return failure(SCHEMA_VIOLATION, violation or "$: invalid envelope", event_id, event_type)


def _string(value: msgspec.Raw) -> str | None:
    """The string a raw JSON value holds, None when it is not a string."""
    data = bytes(value)
    if data[:1] != b'"':
        return None
    text: str = _STRING.decode(data)
    return text


def _kind(raw: bytes | msgspec.Raw) -> str:
    """The JSON type of a (syntactically valid) value, from its first byte."""
    first = bytes(raw).lstrip(b" \t\r\n")[:1]
    return _KINDS.get(first, "number")


def describe_validation_error(message: str, *, prefix: str = "$") -> str:
    """Turn a msgspec validation message into `<path>: <what is wrong>`.

    `prefix` replaces the root `$` of the path (payloads are decoded on their own, so their errors are
    reported under `$.payload`).
    """
    text, separator, where = message.rpartition(" - at `")
    if separator:
        path = prefix + where.rstrip("`")[1:]
    else:
        text, path = message, prefix
    if match := _MISSING.fullmatch(text):
        return f"{path}.{match.group(1)}: required field missing"
    if match := _UNKNOWN.fullmatch(text):
        return f"{path}.{match.group(1)}: unknown field"
    if match := _REGEX.fullmatch(text):
        pattern = match.group(1).replace("\\\\", "\\")
        return f"{path}: {_PATTERN_MEANINGS.get(pattern, f'does not match {pattern}')}"
    if text == "Invalid RFC3339 encoded date":
        return f"{path}: not a date YYYY-MM-DD"
    return f"{path}: {text[0].lower()}{text[1:]}" if text else path
