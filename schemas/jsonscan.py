"""Linear-time lexical scans of JSON bytes: bracket depth and duplicate keys.

A record value is untrusted and up to 256 KiB. A regular expression that can fail and be retried at
every quote is quadratic there (the old nesting check took minutes), and the recursive, allocating
parsers are slow: `json.loads` with hooks costs about 0.1-0.2 µs per object and per number, 20-90 ms
for 256 KiB of `[{},{},...]` or `[0,0,...]`. The scans here are a fixed sequence of whole-buffer
operations in C (`bytes.replace`, numpy), each linear, and per-key work that is vectorised too:

1. escape pairs are blanked first (`\\\\` then `\\"`, left to right, keeping every position), so
   every `"` left delimits a string; a byte is inside a string when an odd number of them precede
   it (the parity of a cumulative sum). Outside a string a backslash is not JSON: whatever the scan
   makes of the bytes after it, a parser stops there, so the depth bound holds either way;
2. brackets outside strings give the depth (a cumulative sum of +1/-1);
3. a colon outside strings follows a key, the string that closes just before it. The key's object
   is the last `{` before it at the same depth (per depth level, after a stable radix sort on the
   level). Keys are compared by length and a polynomial hash of their bytes (modulo 2^32, random
   odd base per process); keys with an escape are first brought to canonical form by msgspec (one
   decode and one encode of all of them). Equal hashes are confirmed by decoding both keys, so the
   answer is exact; each key takes part in at most two such comparisons.

Memory is kept to a few bytes per input byte (8-bit arrays where they suffice): every fresh page
costs a fault, which on a virtual machine can cost more than the arithmetic.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

Bytes = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]
Positions = npt.NDArray[np.intp]
Words = npt.NDArray[np.int32]

_QUOTE, _COLON, _COMMA, _BACKSLASH = ord('"'), ord(":"), ord(","), ord("\\")
_TABLE_SIZE = 256 * 1024 + 1
"""Longest buffer the hash tables cover (the contract's value size limit, plus one)."""
_KEYS = msgspec.json.Decoder(list[str])
_KEY = msgspec.json.Decoder(str)


class _Lexed(NamedTuple):
    raw: bytes
    quote: Mask
    """True at each delimiting quote."""
    quotes_so_far: npt.NDArray[np.int32]
    """Delimiting quotes up to and including each byte."""
    outside: Mask


_last: _Lexed | None = None
"""The last value lexed: the decoder checks nesting, then (if the value fails) duplicate keys."""


def _lex(raw: bytes) -> _Lexed:
    """The quotes and strings of `raw` (remembered for the next call)."""
    global _last
    last = _last  # one read: another thread may replace it meanwhile
    if last is not None and last.raw is raw:
        return last
    quote = _delimiters(raw)
    count = np.empty(quote.size, np.int32)
    np.cumsum(quote, dtype=np.int32, out=count)  # int32: the fast cumulative sum
    outside: Mask = (count & 1) == 0  # a closing quote counts as outside, an opening one as inside
    lexed = _Lexed(raw, quote, count, outside)
    if type(raw) is bytes:  # immutable: the masks stay true for it
        _last = lexed
    return lexed


def _delimiters(raw: bytes) -> Mask:
    """True at every `"` that opens or closes a string: escape pairs are blanked first, left to right,
    as a JSON lexer pairs backslashes (same length, so positions stay)."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    quote: Mask = np.frombuffer(raw, np.uint8) == _QUOTE
    return quote


def _depth(arr: Bytes, outside: Mask) -> npt.NDArray[np.int32]:
    """The bracket depth after each byte (brackets in strings do not count)."""
    steps = np.equal(arr, ord("["))
    steps |= arr == ord("{")
    steps &= outside
    closing = np.equal(arr, ord("]"))
    closing |= arr == ord("}")
    closing &= outside
    delta = steps.view(np.int8)
    delta -= closing.view(np.int8)
    depth = np.empty(arr.size, np.int32)
    np.cumsum(delta, dtype=np.int32, out=depth)  # into int32: several times faster than in int8
    return depth


def nesting_too_deep(raw: bytes, limit: int) -> bool:
    """True when brackets outside strings nest deeper than `limit` or do not balance.

    A closing bracket without an opening one, or an opening one never closed, is unbalanced; a `[`
    closed by `}` is left to the parser (not JSON either way). An unterminated string hides the
    brackets after it, as it does from a parser, which stops there.
    """
    if not raw:
        return False
    depth = _depth(np.frombuffer(raw, np.uint8), _lex(raw).outside)
    return bool(depth.max() > limit or depth.min() < 0 or depth[-1] != 0)


def duplicate_key(raw: bytes) -> str | None:
    """The key written twice in one object of `raw` (the earliest second occurrence), or None.

    `raw` must be valid UTF-8 JSON (syntax checked) whose nesting `nesting_too_deep` accepted. Keys
    are compared as decoded strings: `"a"` and `"\\u0061"` are the same key.
    """
    arr = np.frombuffer(raw, np.uint8)
    lexed = _lex(raw)
    keyed = np.equal(arr, _COLON)
    keyed &= lexed.outside
    colons = np.flatnonzero(keyed)
    if colons.size < 2:
        return None
    quotes = np.flatnonzero(lexed.quote)
    before = lexed.quotes_so_far[colons]  # quotes before each colon: its key's are the last two
    opening, closing = quotes[before - 2], quotes[before - 1]
    outside = lexed.outside
    del quotes, before, lexed
    hashes = _key_hashes(raw, arr, opening, closing, colons)
    ordered = np.sort(hashes)
    if not (ordered[1:] == ordered[:-1]).any():  # all keys differ: no need to know their objects
        return None
    objects = _enclosing_objects(arr, outside, keyed, colons).astype(np.uint64)
    combined = (objects << np.uint64(46)) | hashes
    order = np.argsort(combined, kind="stable")  # equal values keep their order: earlier first
    same = np.flatnonzero(combined[order][1:] == combined[order][:-1])
    later, earlier = order[same + 1], order[same]
    for pair in np.argsort(later, kind="stable"):  # the first is genuine unless the hashes collide
        key: str = _KEY.decode(raw[opening[later[pair]] : closing[later[pair]] + 1])
        if key == _KEY.decode(raw[opening[earlier[pair]] : closing[earlier[pair]] + 1]):
            return key
    return None


def _enclosing_objects(arr: Bytes, outside: Mask, keyed: Mask, colons: Positions) -> Positions:
    """For each colon (a key), an index that is the same exactly for the keys of one object."""
    events = np.equal(arr, ord("{"))
    events &= outside
    events |= keyed
    positions = np.flatnonzero(events)  # the objects' `{` and the keys' colons, in order
    del events
    is_colon = arr[positions] == _COLON
    levels = _depth(arr, outside)[positions].astype(np.int8)  # at most 32: the nesting was checked
    # a key's depth is its object's (counted after the `{`): group by depth, keep the order
    order = np.argsort(levels, kind="stable")
    marker = np.where(is_colon[order], -1, np.arange(positions.size))
    owner = np.empty(positions.size, np.intp)
    owner[order] = np.maximum.accumulate(marker)
    result: Positions = owner[is_colon]
    return result


@lru_cache(maxsize=1)
def _tables() -> tuple[Words, Words]:
    """The powers 0..`_TABLE_SIZE`-1 of a random odd base and of its inverse, modulo 2^32, as int32
    (arithmetic wraps: the same bits as unsigned; built on first use, 2 MB)."""
    base = random.SystemRandom().randrange(3, 1 << 32, 2)
    return _powers(base), _powers(pow(base, -1, 1 << 32))


def _powers(base: int) -> Words:
    """`base**i % 2**32` for i below `_TABLE_SIZE`: an outer product of 1024 low and high powers."""
    low = np.array([pow(base, i, 1 << 32) for i in range(1024)], np.uint64)
    step = pow(base, 1024, 1 << 32)
    high = np.array([pow(step, i, 1 << 32) for i in range(_TABLE_SIZE // 1024 + 1)], np.uint64)
    powers: Words = np.outer(high, low).ravel()[:_TABLE_SIZE].astype(np.uint32).view(np.int32)
    return powers


def _span_hashes(arr: Bytes, starts: Positions, ends: Positions) -> npt.NDArray[np.uint64]:
    """For each `arr[start:end]` (start >= 1): its length (14 bits) and a 32-bit polynomial hash of
    its bytes, whatever the position of the span.

    Prefix sums of byte * base**position over the whole buffer wrap modulo 2^32 (int32, in place:
    one buffer, the fast cumulative sum); a span's difference is brought back to position 0 by the
    inverse power of its start. Strings made to collide for every odd base (Thue-Morse, 2^8 bytes
    and longer) cost only their exact comparison in `duplicate_key`.
    """
    if arr.size >= _TABLE_SIZE:
        raise ValueError(f"{arr.size} bytes: over the {_TABLE_SIZE - 1}-byte limit")
    powers, inverses = _tables()
    prefix = arr.astype(np.int32)
    prefix *= powers[: arr.size]
    np.cumsum(prefix, out=prefix)
    hashes = ((prefix[ends - 1] - prefix[starts - 1]) * inverses[starts]).view(np.uint32)
    lengths = ((ends - starts) & 0x3FFF).astype(np.uint64)
    result: npt.NDArray[np.uint64] = (lengths << np.uint64(32)) | hashes
    return result


def _key_hashes(
    raw: bytes, arr: Bytes, opening: Positions, closing: Positions, colons: Positions
) -> npt.NDArray[np.uint64]:
    """`_span_hashes` of the keys' contents, those with an escape taken in canonical form."""
    hashes = _span_hashes(arr, opening + 1, closing)
    if b"\\" in raw:
        backslashes = np.zeros(arr.size + 1, np.int32)
        np.cumsum(arr == _BACKSLASH, out=backslashes[1:])
        escaped = np.flatnonzero(backslashes[closing] > backslashes[opening])
        del backslashes
        if escaped.size:
            canonical = _canonical(arr, opening[escaped], colons[escaped])
            quotes = np.flatnonzero(_delimiters(canonical))
            hashes[escaped] = _span_hashes(np.frombuffer(canonical, np.uint8), quotes[0::2] + 1, quotes[1::2])
    return hashes


def _canonical(arr: Bytes, opening: Positions, colons: Positions) -> bytes:
    """The keys from each opening quote to its colon, as one JSON array re-encoded by msgspec (so
    equal keys have equal bytes there)."""
    marks = np.zeros(arr.size + 1, np.int8)
    marks[opening] = 1
    marks[colons + 1] = -1  # distinct from every opening quote: a value comes between
    listed = arr[np.cumsum(marks[:-1], dtype=np.int8).view(np.bool_)]  # `"key" :"key2":`...
    lengths = colons + 1 - opening
    listed[np.cumsum(lengths) - 1] = _COMMA
    text = b"[" + listed[:-1].tobytes() + b"]"
    return msgspec.json.encode(_KEYS.decode(text))
