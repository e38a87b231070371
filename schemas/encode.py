"""`Event` -> contract JSON bytes (the Kafka record value), and the record key."""

from __future__ import annotations

import msgspec

from schemas.events import Event

_ENCODER = msgspec.json.Encoder(decimal_format="number")


def encode_event(event: Event) -> bytes:
    """The contract JSON of `event`.

    Money is a JSON number (as exact as the Decimal; decoded events carry exactly 2 decimals), dates
    are `YYYY-MM-DD`, `occurred_at` is RFC 3339 with the event's own offset (`Z` for UTC). Optional
    fields that are None are left out (which also keeps the decoder on its fastest path).
    """
    return _ENCODER.encode(event)


def event_key(event: Event) -> bytes:
    """The Kafka record key of `event`: its `company_id` as UTF-8 (contract, "Wire format")."""
    return event.company_id.encode()
