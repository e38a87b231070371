"""Failure results of decoding and the slow path that classifies them.

Everything here runs only for values that are not valid events (or need a closer look), so clarity
wins over speed: a strict generic parse finds duplicate keys and non-JSON, then the envelope's
`event_type` and `schema_version` decide between the contract's reasons.
"""

from __future__ import annotations

import re

import msgspec

from schemas import fields
from schemas.rawchecks import DuplicateKeyError, JsonInteger, parse_strict
from schemas.reasons import DeadLetterReason
from schemas.registry import Registry

MALFORMED = DeadLetterReason.MALFORMED
SCHEMA_VIOLATION = DeadLetterReason.SCHEMA_VIOLATION
NOT_RFC3339 = "not an RFC 3339 date-time with an offset (e.g. 2020-09-24T10:15:00+03:00)"

_PATTERN_MEANINGS = {
    fields.UUID_PATTERN: "not a UUID in canonical 36-character form",
    fields.RFC3339_PATTERN: NOT_RFC3339,
}
_MISSING = re.compile(r"Object missing required field `(.*)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`")
_REGEX = re.compile(r"Expected `str` matching regex '(.*)'")


class DecodeFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Why a record value is not a valid event: a dead-letter reason and a human-readable detail.

    `event_id` and `event_type` are filled when the value was readable enough to show them (strings
    of at most 64 characters found in the top-level object), whether or not they are valid.
    """

    reason: DeadLetterReason
    detail: str
    event_id: str | None = None
    event_type: str | None = None


def malformation(raw: bytes) -> str | None:
    """What makes `raw` malformed although the typed decoder got through it: a duplicate key, or
    (in the parts it skipped or had not reached when it failed) bad UTF-8 or bad JSON."""
    try:
        parse_strict(raw.decode("utf-8"))
    except UnicodeDecodeError as bad:
        return f"$: not valid UTF-8 (byte 0x{raw[bad.start]:02x} at offset {bad.start})"
    except DuplicateKeyError as exc:
        return f"$: {exc}"
    except ValueError as exc:
        return f"$: not JSON ({exc})"
    return None


def failure(
    reason: DeadLetterReason, detail: str, event_id: object = None, event_type: object = None
) -> DecodeFailure:
    """A failure carrying `event_id` / `event_type` only when they are strings of at most 64 chars."""
    return DecodeFailure(
        reason=reason,
        detail=detail,
        event_id=event_id if type(event_id) is str and len(event_id) <= 64 else None,
        event_type=event_type if type(event_type) is str and len(event_type) <= 64 else None,
    )


def unparsable(raw: bytes, exc: Exception) -> DecodeFailure:
    """The `malformed` failure of a value the typed decoder could not parse (`exc`)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return failure(MALFORMED, f"$: not valid UTF-8 (byte 0x{raw[bad.start]:02x} at offset {bad.start})")
    message = str(exc).removeprefix("JSON is malformed: ")
    return failure(MALFORMED, f"$: not JSON ({message})")


def classify_envelope_failure(raw: bytes, registry: Registry, violation: str) -> DecodeFailure:
    """Classify a value whose envelope failed the typed decode or whose type/version is unknown.

    Re-parses the text generically: duplicate keys and non-objects are `malformed`; then the
    `event_type` and `schema_version` decide between unknown type, unsupported version and (with
    `violation`, the typed decoder's complaint) a schema violation.
    """
    try:
        document = parse_strict(raw.decode("utf-8"))
    except UnicodeDecodeError as bad:
        return failure(MALFORMED, f"$: not valid UTF-8 (byte 0x{raw[bad.start]:02x} at offset {bad.start})")
    except DuplicateKeyError as exc:
        return failure(MALFORMED, f"$: {exc}")
    except ValueError as exc:
        return failure(MALFORMED, f"$: not JSON ({exc})")
    if not isinstance(document, dict):
        return failure(MALFORMED, f"$: not a JSON object (got {_json_kind(document)})")
    event_id, event_type = document.get("event_id"), document.get("event_type")
    if "event_type" not in document:
        return failure(DeadLetterReason.UNKNOWN_EVENT_TYPE, "$.event_type: missing", event_id)
    if type(event_type) is not str:
        detail = f"$.event_type: expected a string, got {_json_kind(event_type)}"
        return failure(DeadLetterReason.UNKNOWN_EVENT_TYPE, detail, event_id)
    known = registry.versions(event_type)
    if not known:
        detail = f"$.event_type: {event_type[:64]!r} is not an event type of the contract"
        return failure(DeadLetterReason.UNKNOWN_EVENT_TYPE, detail, event_id, event_type)
    version = document.get("schema_version")
    if not isinstance(version, JsonInteger) or not version.isdigit() or not version.lstrip("0"):
        return failure(SCHEMA_VIOLATION, violation or "$: invalid envelope", event_id, event_type)
    if len(version) > 18 or int(version) not in known:
        listed = ", ".join(map(str, known))
        detail = f"$.schema_version: {version[:20]} is not a supported version of {event_type} ({listed})"
        return failure(DeadLetterReason.UNSUPPORTED_VERSION, detail, event_id, event_type)
    return failure(SCHEMA_VIOLATION, violation or "$: invalid envelope", event_id, event_type)


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


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if type(value) is str:
        return "string"
    return "number"
