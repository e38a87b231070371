"""Checks on the raw bytes of a record, made before (or instead of) a full parse.

They protect the decoder from poison pills (values over the size limit, nesting deep enough to
exhaust a recursive parser) and classify values a typed decode cannot judge alone: bad UTF-8 in the
parts it skipped, JSON syntax, duplicate keys (which a typed decoder silently resolves to the last
value). Everything here is linear in the input and bounded by the size limit: numpy scans
(`schemas.jsonscan`), `bytes` methods and msgspec's C parser, never a backtracking regular
expression or a recursive Python parse over untrusted bytes.
"""

from __future__ import annotations

import json

import msgspec

from schemas import jsonscan

MAX_VALUE_BYTES = 256 * 1024
"""The contract's maximum record value size."""
MAX_NESTING_DEPTH = 32
"""Deepest nesting of objects/arrays accepted before parsing (valid events have depth 2)."""
UTF8_BOM = b"\xef\xbb\xbf"

SMALL_VALUE_BYTES = 4096
"""Up to this size (every valid event is smaller), duplicate keys are found by Python's parser:
about 10 µs there, where the whole-buffer scans cost a fixed 40-50 µs."""
FEW_VALUES = 64
"""Larger values with at most this many commas (so at most about 33 x 65 values: nesting is at most
32) and ..."""
FEW_ESCAPES = 4096
"""... at most this many backslashes are parsed by Python too: its C scanner's work there is a
pass over the text plus a bounded number of calls (one per object, one per number, numbers never
converted), well under the scans' cost; only escapes cost it more (about 30 ns each)."""

_SYNTAX = msgspec.json.Decoder(msgspec.Raw)
"""Reads a whole JSON value and keeps nothing: msgspec's syntax check, numbers of any size."""


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, object]]) -> None:
    if len({key for key, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)


def _skip(text: str) -> None:
    """A number's text, left unconverted (a 200k-digit integer would take quadratic time)."""


_PARSER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_int=_skip, parse_float=_skip, parse_constant=_skip
)


def duplicate_key(raw: bytes) -> str | None:
    """A key written twice in one object of `raw` (valid UTF-8 JSON, nesting checked), or None.

    Small values, and values of few commas and few backslashes, are parsed by Python (recursion
    bounded by the nesting check, numbers never converted) unless the scans already lexed them (the
    nesting check of a value with many brackets); the others are scanned (`schemas.jsonscan`), never
    parsed into objects."""
    if len(raw) > SMALL_VALUE_BYTES and (
        jsonscan.lexed(raw) or raw.count(b",") > FEW_VALUES or raw.count(b"\\") > FEW_ESCAPES
    ):
        return jsonscan.duplicate_key(raw)
    try:
        _PARSER.decode(raw.decode("utf-8"))
    except _Duplicate as found:
        return found.key
    return None


def nesting_too_deep(raw: bytes, limit: int = MAX_NESTING_DEPTH) -> bool:
    """True when brackets outside strings nest deeper than `limit` or do not balance.

    At most `limit` opening brackets cannot nest deeper: such values answer False at once (valid
    events have 2); the others are `brackets_too_deep`'s.
    """
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    return brackets_too_deep(raw, limit)


def brackets_too_deep(raw: bytes, limit: int = MAX_NESTING_DEPTH) -> bool:
    """`nesting_too_deep` of a value known to hold more than `limit` opening brackets.

    More than `limit` of them before any other byte (whitespace aside) answer True at once.
    Unbalanced brackets answer True: such a value is not JSON either way.
    """
    opening_run = raw[: len(raw) - len(raw.lstrip(b"[{ \t\n\r"))]
    if opening_run.count(b"{") + opening_run.count(b"[") > limit:
        return True
    return jsonscan.nesting_too_deep(raw, limit)


def utf8_problem(raw: bytes) -> str | None:
    """The detail of a value that is not valid UTF-8, None when it is."""
    if raw.isascii():
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"$: not valid UTF-8 (byte 0x{raw[bad.start]:02x} at offset {bad.start})"
    return None


def not_json(exc: msgspec.DecodeError) -> str:
    """The detail of a value msgspec could not parse."""
    return f"$: not JSON ({str(exc).removeprefix('JSON is malformed: ')})"


def malformation(raw: bytes, *, parsed: bool = False) -> str | None:
    """What makes `raw` malformed although its size and nesting passed: bad UTF-8, bad JSON or a
    duplicate key. `parsed` says a typed decode already read all of `raw` (JSON syntax is then
    known to be right; UTF-8 is not: msgspec skips the strings of values it keeps raw).
    """
    problem = utf8_problem(raw)
    if problem is not None:
        return problem
    if not parsed:
        try:
            _SYNTAX.decode(raw)
        except msgspec.DecodeError as exc:
            return not_json(exc)
    key = duplicate_key(raw)
    if key is not None:
        return f"$: duplicate key {json.dumps(key, ensure_ascii=False)}"
    return None
