"""Checks on the raw bytes of a record, made before (or instead of) a full parse.

They protect the decoder from poison pills (values over the size limit, nesting deep enough to
exhaust a recursive parser) and give an exact, strict parse for the rare values that need a closer
look (duplicate keys, which a typed decoder silently resolves to the last value). Everything here is
linear in the input and bounded by the size limit.
"""

from __future__ import annotations

import json
import re
from typing import NoReturn

MAX_VALUE_BYTES = 256 * 1024
"""The contract's maximum record value size."""
MAX_NESTING_DEPTH = 32
"""Deepest nesting of objects/arrays accepted before parsing (valid events have depth 2)."""
UTF8_BOM = b"\xef\xbb\xbf"

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


def nesting_too_deep(raw: bytes, limit: int = MAX_NESTING_DEPTH) -> bool:
    """True when brackets outside strings nest deeper than `limit` or do not balance.

    The count of `{` and `[` bounds the depth from above, so the precise scan (strip strings, keep
    the brackets, then peel the innermost pairs one level per round) only runs for values with more
    than `limit` of them; a run of more than `limit` openers at the start answers at once.
    Unbalanced brackets also answer True: such a value is not JSON either way.
    """
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    text = _JSON_STRING.sub(b"", raw) if b'"' in raw else raw
    brackets = text.translate(None, _NOT_BRACKETS)
    if len(brackets) - len(brackets.lstrip(b"[{")) > limit:
        return True
    for _ in range(limit):
        if not brackets:
            return False
        # "." marks a removed pair so that "{[]}" loses one level per round, not two
        peeled = brackets.replace(b"[]", b".").replace(b"{}", b".").replace(b".", b"")
        if len(peeled) == len(brackets):
            return True
        brackets = peeled
    return bool(brackets)


class JsonInteger(str):
    """The source text of a JSON integer, as `parse_strict` returns it."""


class JsonFraction(str):
    """The source text of a JSON number with a fraction or exponent, as `parse_strict` returns it."""


class DuplicateKeyError(ValueError):
    """A JSON object of the value has the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {json.dumps(key, ensure_ascii=False)}")
        self.key = key


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return result


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def parse_strict(text: str) -> object:
    """Parse JSON text into builtins, rejecting duplicate keys and NaN/Infinity.

    Numbers come back as their source text, typed `JsonInteger` / `JsonFraction` (no int conversion
    limit, no float rounding): this parse serves classification and duplicate detection, not values.
    Raises `DuplicateKeyError` or `ValueError` (invalid JSON). The caller must have checked size and
    nesting first.
    """
    return json.loads(
        text,
        object_pairs_hook=_reject_duplicates,
        parse_int=JsonInteger,
        parse_float=JsonFraction,
        parse_constant=_reject_constant,
    )
