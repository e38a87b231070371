"""Text from events made safe for a terminal (ground floor: imports nothing of the project).

Event data and dead letters are untrusted: an `event_type` of `"\\u001b]0;pwned\\u0007"` printed
raw retitles the operator's terminal, `"\\u001b[2J"` clears it, a U+202E turns the rest of a line
around. Every operator command prints such values through `printable` (one field or one line at a
time) and JSON through `printable_json`.

Escaped (everything else is shown as it is, including every letter of every script):

| characters | shown as |
|---|---|
| TAB, LF, CR | `\\t`, `\\n`, `\\r` |
| other C0 controls U+0000–U+001F, DEL U+007F, C1 controls U+0080–U+009F | `\\x1b`, `\\x7f`, `\\x9b` |
| bidi controls U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069 | `\\u202e` |
| line and paragraph separators U+2028, U+2029 | `\\u2028` |

A backslash already in the data is left alone, so the output is for reading, not for parsing back.
Both functions are one `str.translate` pass: linear in the input.
"""

from __future__ import annotations

_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_BIDI_AND_SEPARATORS = (
    0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029
)


def _table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)):
        table[code] = _NAMED.get(code, f"\\x{code:02x}")
    for code in _BIDI_AND_SEPARATORS:
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPES = _table()
_ESCAPES_KEEPING_TAB = {code: shown for code, shown in _ESCAPES.items() if code != 0x09}
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in _ESCAPES if code >= 0x7F}
"""What JSON text may still carry raw: JSON already escapes U+0000–U+001F inside strings, and
these characters cannot occur outside strings, so `\\uXXXX` keeps the document equal."""


def printable(text: str, *, keep_tab: bool = False) -> str:
    """`text` with the characters of the module table escaped (TAB kept when `keep_tab`: log lines
    whose columns are tab-aligned)."""
    return text.translate(_ESCAPES_KEEPING_TAB if keep_tab else _ESCAPES)


def printable_json(document: str) -> str:
    """Serialized JSON whose strings hold no raw DEL, C1, bidi or separator character (each becomes
    a `\\uXXXX` escape; the parsed document is unchanged)."""
    return document.translate(_JSON_ESCAPES)
