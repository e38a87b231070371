"""Property test of the cheap duplicate-key / money-string detection (quote counting) in decode_event.

Valid events are re-serialised with random formatting, explicit nulls, quotes, backslashes, colons
and `"key": null` look-alikes in text; some get a duplicated key or money written as a string. The
decoder's verdict must match an oracle: a strict parse that rejects duplicate keys.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

from schemas.decode import DecodeFailure, decode_event
from schemas.encode import encode_event
from schemas.events import Event
from schemas.examples import example_events
from schemas.reasons import DeadLetterReason

Pairs = list[tuple[str, Any]]
NASTY_TEXT = [
    'say "hi"',
    "a\\b",
    "ends with \\\\",
    'x": null',
    '"reason": null',
    "t:1:2",
    "null",
    "Ё \u2028 ё",
    "{[",
    '\\"',
]
OPTIONAL_NULLS = {
    "order.cancelled": ["reason"],
    "member.left": ["reason"],
    "member.updated": ["name", "kind", "size"],
}
TEXT_FIELDS = ("title", "name", "reason", "order_id", "patent_id", "request_id")


def _pairs(document: dict[str, Any]) -> Pairs:
    return [(k, _pairs(v) if isinstance(v, dict) else v) for k, v in document.items()]


def _scalar(value: Any, ensure_ascii: bool) -> str:
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=ensure_ascii)


def _dump(pairs: Pairs, rng: random.Random, ensure_ascii: bool) -> str:
    colon = rng.choice([":", ": ", " : ", ":\n  "])
    comma = rng.choice([",", ", ", ",\n  "])
    items = [
        json.dumps(key, ensure_ascii=ensure_ascii)
        + colon
        + (_dump(value, rng, ensure_ascii) if isinstance(value, list) else _scalar(value, ensure_ascii))
        for key, value in pairs
    ]
    return "{" + comma.join(items) + "}"


def _variant(event: Event, rng: random.Random) -> tuple[bytes, str]:
    """A re-serialisation of `event` and what it should decode to: "event", "duplicate" or "money"."""
    document = json.loads(encode_event(event), parse_float=Decimal)
    payload = document["payload"]
    if rng.random() < 0.5 and "trace_id" not in document:
        document["trace_id"] = None
    for name in OPTIONAL_NULLS.get(event.event_type, []):
        if name not in payload and rng.random() < 0.5:
            payload[name] = None
    for name in TEXT_FIELDS:
        if isinstance(payload.get(name), str) and rng.random() < 0.6:
            payload[name] = (payload[name] + rng.choice(NASTY_TEXT))[:64]
    expected = "event"
    money = [name for name in payload if name.endswith("_rub")]
    if money and rng.random() < 0.15:
        payload[rng.choice(money)] = str(payload[money[0]])
        expected = "money"
    pairs = _pairs(document)
    if rng.random() < 0.3:
        target = pairs if rng.random() < 0.5 else next(v for k, v in pairs if k == "payload")
        if target:
            key, value = rng.choice(target)
            target.insert(rng.randrange(len(target) + 1), (key, value if rng.random() < 0.5 else None))
            expected = "duplicate"
    ensure_ascii = rng.random() < 0.5
    return _dump(pairs, rng, ensure_ascii).encode(), expected


def test_quote_counting_agrees_with_a_strict_parse() -> None:
    rng = random.Random(4242)
    seen = {"event": 0, "duplicate": 0, "money": 0}
    for _ in range(3000):
        event = rng.choice(example_events())
        raw, expected = _variant(event, rng)
        result = decode_event(raw)
        seen[expected] += 1
        if expected == "duplicate":
            assert isinstance(result, DecodeFailure) and result.reason == DeadLetterReason.MALFORMED, (
                raw,
                result,
            )
            assert "duplicate key" in result.detail
        elif expected == "money":
            assert isinstance(result, DecodeFailure), raw
            assert result.reason == DeadLetterReason.SCHEMA_VIOLATION, (raw, result)
            assert "money must be a JSON number" in result.detail, (raw, result)
        else:
            assert isinstance(result, Event), (raw, result)
            assert result.event_id == event.event_id and result.payload.__class__ is event.payload.__class__
    assert min(seen.values()) > 100, seen
