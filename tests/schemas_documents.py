"""Helpers for the schemas tests: example events as JSON documents, mutations, failure asserts."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from schemas.decode import DecodeFailure, decode_event
from schemas.encode import encode_event
from schemas.events import Event
from schemas.examples import example_events
from schemas.reasons import DeadLetterReason

MALFORMED = DeadLetterReason.MALFORMED
UNKNOWN_TYPE = DeadLetterReason.UNKNOWN_EVENT_TYPE
UNSUPPORTED = DeadLetterReason.UNSUPPORTED_VERSION
VIOLATION = DeadLetterReason.SCHEMA_VIOLATION

Mutation = Callable[[dict[str, Any]], None]


def document(event_type: str) -> dict[str, Any]:
    """The example event of `event_type` as a JSON document (money as Decimal, i.e. exact numbers)."""
    for event in example_events():
        if event.event_type == event_type:
            loaded: dict[str, Any] = json.loads(encode_event(event), parse_float=Decimal)
            return loaded
    raise KeyError(event_type)


def dumps(doc: Any) -> bytes:
    """JSON bytes of `doc`, Decimals written with their exact digits."""
    return json.dumps(doc, default=json_default, ensure_ascii=False).encode()


def json_default(value: object) -> Any:
    """`json.dumps(default=...)` that writes a Decimal as a number with its exact digits."""
    if isinstance(value, Decimal):
        return float(value) if value == value.to_integral_value() else _RawNumber(value)
    raise TypeError(value)


class _RawNumber(float):
    """Lets json.dumps write a Decimal's exact digits."""

    def __new__(cls, value: Decimal) -> _RawNumber:
        number = super().__new__(cls, value)
        number.text = str(value)
        return number

    def __repr__(self) -> str:
        return self.text

    text: str


def decode_mutated(event_type: str, mutate: Mutation, topic: str | None = None) -> Event | DecodeFailure:
    """Decode the example event of `event_type` after `mutate` changed its JSON document."""
    doc = document(event_type)
    mutate(doc)
    return decode_event(dumps(doc), topic=topic)


def assert_failure(result: Event | DecodeFailure, reason: DeadLetterReason, detail_part: str) -> None:
    """`result` is a failure with `reason` whose detail contains `detail_part`."""
    assert isinstance(result, DecodeFailure), result
    assert result.reason == reason, result
    assert detail_part in result.detail, result.detail


def setter(path: str, value: Any) -> Mutation:
    """Set `payload.x` or `x` to `value`."""

    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def remover(path: str) -> Mutation:
    """Delete `payload.x` or `x`."""

    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


class DuplicateKeyError(ValueError):
    """`strict_parse` found an object with the same key twice."""


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise DuplicateKeyError(next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i])))
    return result


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def _reject_lone_surrogates(value: object) -> None:
    strings = [value] if isinstance(value, str) else []
    if isinstance(value, dict):
        strings = list(value)
        for item in value.values():
            _reject_lone_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _reject_lone_surrogates(item)
    for text in strings:
        text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate


def strict_parse(raw: bytes) -> object:
    """An independent, slow oracle of the contract's JSON: Python's parser on UTF-8 text, rejecting
    duplicate keys, NaN/Infinity and lone surrogate escapes (which the decoder's msgspec rejects);
    numbers kept as text. Raises ValueError (UnicodeDecodeError, DuplicateKeyError...) otherwise."""
    document = json.loads(
        raw.decode("utf-8"),
        object_pairs_hook=_reject_duplicates,
        parse_int=str,
        parse_float=str,
        parse_constant=_reject_constant,
    )
    _reject_lone_surrogates(document)
    return document
