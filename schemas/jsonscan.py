"""Linear-time lexical scans of JSON bytes: bracket depth and duplicate keys.

A record value is untrusted and up to 256 KiB. A regular expression that can fail and be retried at
every quote is quadratic there (the old nesting check took minutes), and the recursive, allocating
parsers are slow: `json.loads` with hooks costs about 0.1-0.2 µs per object and per number, 20-90 ms
for 256 KiB of `[{},{},...]` or `[0,0,...]`. The scans here are a fixed sequence of whole-buffer
numpy operations, each linear, and per-key or per-run work that is vectorised too:

1. a `"` right after an odd run of backslashes is escaped (as a JSON lexer pairs backslashes left
   to right: the runs are found once, each quote's run by a binary search); every other `"`
   delimits a string, and a byte is inside a string when an odd number of them precede it (the
   parity of a cumulative sum). Outside a string a backslash is not JSON: whatever the scan makes
   of the bytes after it, a parser stops there, so the depth bound holds either way;
2. brackets outside strings give the depth (a cumulative sum of +1/-1);
3. a colon outside strings follows a key, the string that closes just before it. The first 64 keys
   are decoded and compared in Python: a repeat among them is the earliest repeat of the value,
   found without touching the rest (a value of one key written 40,000 times costs what a small
   one does). Otherwise all keys are compared by length and a polynomial hash of their bytes
   (modulo 2^32, random odd base per process); keys with an escape are first brought to canonical
   form by msgspec (one decode and one encode of all of them). Only when two hashes are equal are
   the keys' objects needed: the last `{` before a key at its depth (per depth level, after a
   stable radix sort on the level). One unstable sort of hash and key
   number packed together picks the keys whose hash another key has; a stable sort of those by
   (object, hash) puts the keys of one object with one hash next to each other in order; a
   candidate pair is confirmed by decoding both keys, and a group holding a false pair (colliding
   hashes) is searched key by key,
   so the answer is exact.

The whole-buffer arrays live in a per-thread workspace (about 4 MB once used): a fresh buffer
costs a page fault per 4 KiB, which on a virtual machine costs more than the arithmetic. The last
value lexed is remembered there, so the decoder's nesting check and its duplicate-key check of a
failing value lex it once.
"""

from __future__ import annotations

import random
import threading
from functools import lru_cache

import msgspec
import numpy as np
import numpy.typing as npt

from schemas.jsonkeys import Keys, first_repeat, repeated_hashes

Bytes = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]
Positions = npt.NDArray[np.intp]
Words = npt.NDArray[np.int32]

_QUOTE, _COLON, _COMMA, _BACKSLASH = ord('"'), ord(":"), ord(","), ord("\\")
_TABLE_SIZE = 256 * 1024 + 1
"""Longest buffer the scans take (the contract's value size limit, plus one)."""
_SHORT_RUN = 8
"""Runs of backslashes before a quote followed byte by byte; longer ones are measured at once."""
_FEW_KEYS = 64
"""Up to this many keys, they are decoded and compared in Python."""
_KEYS = msgspec.json.Decoder(list[str])


class _Workspace(threading.local):
    """Whole-buffer arrays of one thread, reused from value to value, and what they hold."""

    def __init__(self) -> None:
        self.lexed: bytes | None = None
        """The value whose lexing `quote`, `quotes_so_far` and `outside` hold."""
        self.quote = np.empty(_TABLE_SIZE, np.bool_)
        self.quotes_so_far = np.empty(_TABLE_SIZE, np.int32)
        self.outside = np.empty(_TABLE_SIZE, np.bool_)
        self.keyed = np.empty(_TABLE_SIZE, np.bool_)
        self.flags = np.empty(_TABLE_SIZE, np.bool_)
        self.other_flags = np.empty(_TABLE_SIZE, np.bool_)
        self.more_flags = np.empty(_TABLE_SIZE, np.bool_)
        self.words = np.empty(_TABLE_SIZE, np.int32)


_WORKSPACE = _Workspace()


def lexed(raw: bytes) -> bool:
    """True when this thread's workspace holds the lexing of `raw` (this very object)."""
    return _WORKSPACE.lexed is raw


def _bytes_of(raw: bytes) -> Bytes:
    if len(raw) >= _TABLE_SIZE:
        raise ValueError(f"{len(raw)} bytes: over the {_TABLE_SIZE - 1}-byte limit")
    return np.frombuffer(raw, np.uint8)


def _lex(raw: bytes, space: _Workspace) -> tuple[Mask, Words, Mask]:
    """Delimiting quotes, quotes up to and including each byte, and the bytes outside strings (a
    closing quote counts as outside, an opening one as inside), in `space`."""
    size = len(raw)
    quote, so_far, outside = space.quote[:size], space.quotes_so_far[:size], space.outside[:size]
    if space.lexed is not raw:
        space.lexed = None
        _delimiters(np.frombuffer(raw, np.uint8), quote, space)
        np.cumsum(quote, dtype=np.int32, out=so_far)  # into int32: the fast cumulative sum
        np.bitwise_and(so_far, 1, out=space.words[:size])
        np.equal(space.words[:size], 0, out=outside)
        if type(raw) is bytes:  # immutable: the arrays stay true for it
            space.lexed = raw
    return quote, so_far, outside


def _delimiters(arr: Bytes, quote: Mask, space: _Workspace) -> None:
    """Set `quote` at every `"` that opens or closes a string: the byte after an odd run of
    backslashes is escaped (as a JSON lexer pairs them). Uses the flag and word arrays of `space`.

    `reach` holds the quotes with at least k backslashes just before them, for k = 1, 2, ... (one
    shifted AND per step, in place); the parity of a quote's run is the XOR of those masks. Runs
    longer than `_SHORT_RUN` are measured from their first backslash (the runs' starts found at once,
    each long run's by a binary search).
    """
    np.equal(arr, _QUOTE, out=quote)
    size = arr.size
    backslash, reach, odd = space.flags[:size], space.other_flags[:size], space.more_flags[:size]
    np.equal(arr, _BACKSLASH, out=backslash)
    if size < 2 or not backslash.any():
        return
    reach[0] = False
    np.logical_and(quote[1:], backslash[:-1], out=reach[1:])  # quotes right after a backslash
    if not reach.any():
        return
    odd[:] = reach
    for k in range(2, min(_SHORT_RUN, size) + 1):
        reach[k - 1] = False
        reach[k:] &= backslash[:-k]
        if not reach.any():
            break
        odd ^= reach
    else:
        long_runs = np.flatnonzero(reach)  # quotes after `_SHORT_RUN` backslashes or more
        if long_runs.size:  # each run's length from where it starts (a binary search per run)
            np.logical_not(backslash[:-1], out=reach[1:])
            reach[1:] &= backslash[1:]
            reach[0] = backslash[0]
            starts = np.flatnonzero(reach)  # the first backslash of every run
            run_start = starts[np.searchsorted(starts, long_runs - 1, side="right") - 1]
            odd[long_runs] = ((long_runs - run_start) & 1) == 1
    np.logical_not(odd, out=odd)
    quote &= odd


def _depth(arr: Bytes, outside: Mask, space: _Workspace) -> Words:
    """The bracket depth after each byte (brackets in strings do not count), in `space.words`."""
    size = arr.size
    opening, closing, other = space.flags[:size], space.other_flags[:size], space.more_flags[:size]
    np.equal(arr, ord("["), out=opening)
    opening |= np.equal(arr, ord("{"), out=other)
    opening &= outside
    np.equal(arr, ord("]"), out=closing)
    closing |= np.equal(arr, ord("}"), out=other)
    closing &= outside
    delta = opening.view(np.int8)
    delta -= closing.view(np.int8)
    depth = space.words[:size]
    np.cumsum(delta, dtype=np.int32, out=depth)
    return depth


def nesting_too_deep(raw: bytes, limit: int) -> bool:
    """True when brackets outside strings nest deeper than `limit` or do not balance.

    A closing bracket without an opening one, or an opening one never closed, is unbalanced; a `[`
    closed by `}` is left to the parser (not JSON either way). An unterminated string hides the
    brackets after it, as it does from a parser, which stops there.
    """
    if not raw:
        return False
    space = _WORKSPACE
    arr = _bytes_of(raw)
    depth = _depth(arr, _lex(raw, space)[2], space)
    return bool(depth.max() > limit or depth.min() < 0 or depth[-1] != 0)


def duplicate_key(raw: bytes) -> str | None:
    """The key written twice in one object of `raw` (the earliest second occurrence), or None.

    `raw` must be valid UTF-8 JSON (syntax checked) whose nesting `nesting_too_deep` accepted. Keys
    are compared as decoded strings: `"a"` and `"\\u0061"` are the same key.

    The first `_FEW_KEYS` keys are decoded and compared first: a repeat among them is the earliest
    (its first occurrence is earlier still), so values made of one key repeated cost no more than a
    small one. Only when they all differ are all the keys hashed.
    """
    space = _WORKSPACE
    arr = _bytes_of(raw)
    quote, so_far, outside = _lex(raw, space)
    keyed = space.keyed[: arr.size]
    np.equal(arr, _COLON, out=keyed)
    keyed &= outside
    colons = np.flatnonzero(keyed)
    if colons.size < 2:
        return None
    if _FEW_KEYS:
        few = colons[:_FEW_KEYS]
        found = _repeat_among_first(raw, arr, (quote, so_far, outside, keyed), few, space)
        if found is not None or colons.size == few.size:
            return found
    quotes = np.flatnonzero(quote)
    before = so_far[colons]
    keys = Keys(raw, quotes[before - 2], quotes[before - 1])
    hashes = _key_hashes(raw, arr, keys.opening, keys.closing, colons, space)
    candidates = repeated_hashes(hashes)
    if not candidates.size:  # all keys differ: their objects do not matter
        return None
    keys.objects = _enclosing_objects(arr, outside, keyed, space)
    return first_repeat(keys, hashes, candidates)


def _repeat_among_first(
    raw: bytes, arr: Bytes, lexed: tuple[Mask, Words, Mask, Mask], colons: Positions, space: _Workspace
) -> str | None:
    """The earliest repeated key among the keys of `colons` (the first of the value), decoded;
    `lexed` holds the delimiting quotes, the quotes so far, the bytes outside strings and the keys'
    colons."""
    quote, so_far, outside, keyed = lexed
    end = int(colons[-1]) + 1
    quotes = np.flatnonzero(quote[:end])
    before = so_far[colons]  # quotes up to each colon: its key's are the last two
    keys = Keys(raw, quotes[before - 2], quotes[before - 1])
    decoded = [keys.text(index) for index in range(colons.size)]
    if len(set(decoded)) == len(decoded):
        return None
    keys.objects = _enclosing_objects(arr[:end], outside[:end], keyed[:end], space)
    hashes = np.array([hash(key) & 0x3FFFFFFFFFFF for key in decoded], np.uint64)
    return first_repeat(keys, hashes, repeated_hashes(hashes))


def _enclosing_objects(arr: Bytes, outside: Mask, keyed: Mask, space: _Workspace) -> Positions:
    """For each key (a colon in `keyed`), an index that is the same exactly for the keys of one
    object."""
    events = space.flags[: arr.size]
    np.equal(arr, ord("{"), out=events)
    events &= outside
    events |= keyed
    positions = np.flatnonzero(events)  # the objects' `{` and the keys' colons, in order
    is_colon = arr[positions] == _COLON
    levels = _depth(arr, outside, space)[positions].astype(np.int8)  # at most 32: nesting checked
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


def _span_hashes(
    arr: Bytes, opening: Positions, closing: Positions, space: _Workspace
) -> npt.NDArray[np.uint64]:
    """For each span strictly between `opening[i]` and `closing[i]`: its length (14 bits) and a
    32-bit polynomial hash of its bytes, whatever the position of the span.

    Prefix sums of byte * base**position over the whole buffer wrap modulo 2^32 (int32, in place in
    `space.words`, after a leading 0: the fast cumulative sum); a span's difference is brought back
    to position 0 by the inverse power of its start. Strings made to collide for every odd base
    (Thue-Morse, 2^8 bytes and longer) cost their exact comparison in `duplicate_key`, which then
    searches their group key by key: a collision never hides a repeat.
    """
    powers, inverses = _tables()
    size = arr.size
    before = space.words[: size + 1]  # before[i]: the sum over the bytes before i
    before[0] = 0
    np.multiply(arr, powers[:size], out=before[1:])
    np.cumsum(before[1:], out=before[1:])
    after_opening = before[1:]  # after_opening[i] = before[i + 1]
    hashes = (before[closing] - after_opening[opening]) * inverses[1:][opening]
    lengths = (closing - opening - 1) & 0x3FFF
    result: npt.NDArray[np.uint64] = (lengths.astype(np.uint64) << np.uint64(32)) | hashes.view(np.uint32)
    return result


def _key_hashes(
    raw: bytes, arr: Bytes, opening: Positions, closing: Positions, colons: Positions, space: _Workspace
) -> npt.NDArray[np.uint64]:
    """`_span_hashes` of the keys' contents, those with an escape taken in canonical form."""
    hashes = _span_hashes(arr, opening, closing, space)
    if _BACKSLASH in raw:
        backslashes = space.words[: arr.size]  # backslashes up to each byte
        np.cumsum(arr == _BACKSLASH, dtype=np.int32, out=backslashes)
        escaped = np.flatnonzero(backslashes[closing] > backslashes[opening])
        if escaped.size:
            canonical = _canonical(arr, opening[escaped], colons[escaped], space)
            listed = np.frombuffer(canonical, np.uint8)
            quote = np.empty(listed.size, np.bool_)
            _delimiters(listed, quote, space)
            quotes = np.flatnonzero(quote)
            hashes[escaped] = _span_hashes(listed, quotes[0::2], quotes[1::2], space)
    return hashes


def _canonical(arr: Bytes, opening: Positions, colons: Positions, space: _Workspace) -> bytes:
    """The keys from each opening quote to its colon, as one JSON array re-encoded by msgspec (so
    equal keys have equal bytes there; never longer than `arr`)."""
    marks = space.words[: arr.size + 1]
    marks[:] = 0
    marks[opening] = 1
    marks[colons + 1] = -1  # distinct from every opening quote: a value comes between
    np.cumsum(marks, out=marks)
    keep = space.flags[: arr.size]
    np.not_equal(marks[:-1], 0, out=keep)
    listed = arr[keep]  # `"key" :"key2":`...
    lengths = colons + 1 - opening
    listed[np.cumsum(lengths) - 1] = _COMMA
    text = b"[" + listed[:-1].tobytes() + b"]"
    return msgspec.json.encode(_KEYS.decode(text))
