"""Adversarial record values of a chosen size, shared by the linearity tests and `bench/bench_hostile.py`.

Each shape is built around the valid `order.placed` example and filled with a repeated unit up to
`size` bytes (never more), so the same shape can be measured at N and 4N bytes. The shapes aim at
what a decoder does per byte: bracket depth, string and escape scanning, number parsing, key
handling, Unicode, explicit nulls and the classification of the failure (detail text).
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.encode import encode_event
from schemas.examples import EXAMPLE_PAYLOADS, example_event

ORDER = encode_event(example_event(EXAMPLE_PAYLOADS[3]))
"""The valid `order.placed` example (title `CNC milling...`, budget `1250000.50`)."""
CANCELLED = encode_event(example_event(EXAMPLE_PAYLOADS[6]))
"""The valid `order.cancelled` example (optional `reason`)."""
TITLE = b'"title":"CNC milling of aluminium housings, batch of 500"'
DEPTH_29 = b"[" * 29 + b"]" * 29
"""Arrays nested 29 deep: in a payload member's array, 32 levels with the envelope's and payload's."""


def fill(prefix: bytes, unit: bytes, suffix: bytes, size: int) -> bytes:
    """`prefix + unit * k + suffix` with the largest k that keeps it within `size` bytes."""
    count = max(0, (size - len(prefix) - len(suffix)) // len(unit))
    return prefix + unit * count + suffix


def _title(unit: bytes, size: int, *, close: bool = True) -> bytes:
    """ORDER with its title made of `unit` repeated (the string closed or left open)."""
    head, _, tail = ORDER.partition(TITLE)
    suffix = b'"' + tail if close else b""
    return fill(head + b'"title":"', unit, suffix, size)


def _payload_member(key: bytes, unit: bytes, size: int, closing: bytes = b"", opening: bytes = b"") -> bytes:
    """ORDER with `"<key>": <opening><unit repeated><closing>` added as the first payload member."""
    head, _, tail = ORDER.partition(b'"payload":{')
    return fill(head + b'"payload":{"' + key + b'":' + opening, unit, closing + b"," + tail, size)


def _replace(old: bytes, prefix: bytes, unit: bytes, suffix: bytes, size: int) -> bytes:
    head, _, tail = ORDER.partition(old)
    return fill(head + prefix, unit, suffix + tail, size)


SHAPES: dict[str, Callable[[int], bytes]] = {
    # bracket depth and the strings that hide brackets
    "deep arrays [[[...]]]": lambda n: fill(b"", b"[", b"", n // 2) + b"]" * (n // 2),
    "deep objects {\"a\":{...": lambda n: fill(b"", b'{"a":', b"1", n - n // 6) + b"}" * (n // 6),
    "unclosed deep arrays": lambda n: fill(b"", b"[", b"", n),
    "33 [ + unterminated string of \\\"": lambda n: fill(b"[" * 33 + b'"', b'a\\"', b"", n),
    "event, unterminated title of \\\"": lambda n: _title(b'a\\"', n, close=False),
    "event, title of [ and \\\" (closed)": lambda n: _title(b'[\\"', n),
    "depth-32 arrays side by side": lambda n: _payload_member(b"x", DEPTH_29 + b",", n, b"0]", b"["),
    "flat array of 0s in the payload": lambda n: _payload_member(b"x", b"0,", n, b"0]", b"["),
    "flat array of [] in the payload": lambda n: _payload_member(b"x", b"[],", n, b"[]]", b"["),
    "array of empty strings": lambda n: _payload_member(b"x", b'"",', n, b'""]', b"["),
    "brackets inside one string": lambda n: _title(b"[{", n),
    # escapes and backslashes
    "title of \\\\ pairs": lambda n: _title(b"\\\\", n),
    "odd backslash run, unterminated": lambda n: _title(b"\\\\", n, close=False) + b"\\",
    "title of \\u0000 escapes": lambda n: _title(b"\\u0000", n),
    "title of \\\\u0000 (escaped backslash)": lambda n: _title(b"\\\\u0000", n),
    "title of \\b\\f escapes": lambda n: _title(b"\\b\\f", n),
    "title of raw DEL bytes": lambda n: _title(b"\x7f", n),
    "title of lone surrogates \\ud800": lambda n: _title(b"\\ud800", n),
    "title of surrogate pairs": lambda n: _title(b"\\ud83d\\ude00", n),
    "title of 2-byte UTF-8 (Ё)": lambda n: _title("Ё".encode(), n),
    "title of 4-byte UTF-8 (emoji)": lambda n: _title("😀".encode(), n),
    "title of invalid UTF-8 at the end": lambda n: _title(b"a", n - 1) + b"\xff",
    # numbers
    "200k-digit money": lambda n: _replace(b"1250000.50", b"", b"9", b"", n),
    "200k-decimal money": lambda n: _replace(b"1250000.50", b"0.", b"1", b"", n),
    "200k-digit exponent": lambda n: _replace(b"1250000.50", b"1e", b"9", b"", n),
    "200k-digit quantity": lambda n: _replace(b'"quantity":500', b'"quantity":', b"9", b"", n),
    "200k-digit schema_version": lambda n: _replace(
        b'"schema_version":1', b'"schema_version":', b"7", b"", n
    ),
    "200k-digit number as event_id": lambda n: _replace(
        b'"event_id":"00000000-0000-4eed-8000-000000000000"', b'"event_id":', b"1", b"", n
    ),
    "200k-digit number as a top-level value": lambda n: fill(b"", b"9", b"", n),
    "200k-digit negative fraction": lambda n: _replace(b"1250000.50", b"-0.", b"0", b"1e-9", n),
    # keys and nulls
    "many unknown payload keys": lambda n: _payload_member(b"k", b'0,"k":', n, b"0"),
    "many distinct unknown keys": lambda n: _many_keys(n),
    "one 256 KiB key": lambda n: _long_key(b"", n),
    "duplicate reason: null repeated": lambda n: _cancelled_nulls(b'"reason":null,', n),
    "duplicate trace_id: null repeated": lambda n: _cancelled_nulls(b'"trace_id":null,', n, envelope=True),
    "reason then whitespace, no colon": lambda n: _cancelled_nulls(b'"reason"' + b" " * 64 + b",", n),
    "whitespace padding (valid event)": lambda n: fill(ORDER[:-1], b" ", b"}", n),
    "newline padding (valid event)": lambda n: fill(ORDER[:-1], b"\n", b"}", n),
    # envelope strings
    "256 KiB event_type": lambda n: _replace(b'"order.placed"', b'"', b"x", b'"', n),
    "256 KiB occurred_at": lambda n: _replace(
        b'"2020-09-24T10:15:00+03:00"', b'"2020-09-24T10:15:00', b"0", b'"', n
    ),
    "256 KiB company_id of digits": lambda n: _replace(b'"7707083893"', b'"', b"7", b'"', n),
    "256 KiB unknown field name with ESC": lambda n: _long_key(b"\\u001b[31m", n),
}


def _long_key(start: bytes, size: int) -> bytes:
    """ORDER with one unknown payload key `start + "kkk..."` filling the value up to `size`."""
    head, _, tail = ORDER.partition(b'"payload":{')
    return fill(head + b'"payload":{"' + start, b"k", b'":0,' + tail, size)


def _many_keys(size: int) -> bytes:
    head, _, tail = ORDER.partition(b'"payload":{')
    parts = [head, b'"payload":{']
    used = len(head) + len(tail) + 11
    index = 0
    while True:
        member = b'"k%d":0,' % index
        if used + len(member) > size:
            break
        parts.append(member)
        used += len(member)
        index += 1
    parts.append(tail)
    return b"".join(parts)


def _cancelled_nulls(unit: bytes, size: int, *, envelope: bool = False) -> bytes:
    """CANCELLED with `unit` repeated before `source` (envelope) or first in the payload."""
    marker = b'"source":' if envelope else b'"payload":{'
    head, _, tail = CANCELLED.partition(marker)
    if envelope:
        return fill(head, unit, marker + tail, size)
    return fill(head + marker, unit, tail, size)


def hostile_values(size: int) -> dict[str, bytes]:
    """Every shape at (at most) `size` bytes."""
    return {name: build(size) for name, build in SHAPES.items()}
