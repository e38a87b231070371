"""Dead-letter reason codes of the contract (`CONTRACT.md`, "Dead letters")."""

from __future__ import annotations

from enum import StrEnum


class DeadLetterReason(StrEnum):
    """Why an event went to `mic.deadletter`; the value is the code written on the wire."""

    MALFORMED = "malformed"
    """Not UTF-8, not JSON, not an object, over the size limit, nesting too deep, duplicate keys."""
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    """`event_type` missing or not in the contract."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """`schema_version` is a valid integer but not known for that event type."""
    SCHEMA_VIOLATION = "schema_violation"
    """A field missing, extra, of the wrong type, out of range, bad INN or date, wrong topic."""
    UNKNOWN_COMPANY = "unknown_company"
    """Business rule 1: the company (or manufacturer) is not an active member after the wait."""
    INVALID_TRANSITION = "invalid_transition"
    """Business rule 2: the event does not follow its entity's lifecycle."""


DECODE_REASONS: frozenset[DeadLetterReason] = frozenset(
    {
        DeadLetterReason.MALFORMED,
        DeadLetterReason.UNKNOWN_EVENT_TYPE,
        DeadLetterReason.UNSUPPORTED_VERSION,
        DeadLetterReason.SCHEMA_VIOLATION,
    }
)
"""The reasons `schemas.decode.decode_event` can return (the others come from the stream's rules)."""
