"""The earliest repeated key of a JSON value, given where its keys are, their objects and hashes.

`schemas.jsonscan` finds the keys (their quotes), the object each belongs to and a hash of each key's
decoded text; this module turns those arrays into the answer: the earliest key equal to an earlier
key of its object, exactly (a hash collision costs a search, never a wrong answer).
"""

from __future__ import annotations

import random
from functools import lru_cache

import msgspec
import numpy as np
import numpy.typing as npt

Positions = npt.NDArray[np.intp]
_KEY = msgspec.json.Decoder(str)


class Keys:
    """The keys of a value: each one's quotes, object and decoded text (decoded on demand)."""

    def __init__(self, raw: bytes, opening: Positions, closing: Positions) -> None:
        self.raw, self.opening, self.closing = raw, opening, closing
        self.objects: Positions = np.empty(0, np.intp)

    def text(self, index: int) -> str:
        key: str = _KEY.decode(self.raw[self.opening[index] : self.closing[index] + 1])
        return key

    def same(self, first: int, second: int) -> bool:
        return bool(self.objects[first] == self.objects[second]) and self.text(first) == self.text(second)


_INDEX_BITS = 16
"""Key numbers take 16 bits: a key costs at least 5 bytes (`"":0,`), so 256 KiB hold < 2^16 keys."""
_INDEX_MASK = np.uint64((1 << _INDEX_BITS) - 1)


def first_repeat(keys: Keys, hashes: npt.NDArray[np.uint64]) -> str | None:
    """The earliest key equal to an earlier key of its object, given each key's object and hash.

    Each key gets one 64-bit number: the high 48 bits of a random bijective mix of (object, hash)
    and its own number in the low 16, so one unstable sort puts equal keys of one object next to
    each other in their order. Neighbours with the same high bits are candidate pairs; the pair
    with the smallest second key is almost always a genuine repeat, confirmed by decoding both.
    Otherwise (hashes or mixes that collide), pairs are taken by their second key and a group
    holding a false pair is searched key by key, so the answer stays exact.
    """
    count = hashes.size
    if count > int(_INDEX_MASK) + 1:
        raise ValueError(f"{count} keys: more than a 256 KiB JSON value can hold")
    mixed = (keys.objects.astype(np.uint64) << np.uint64(46)) | hashes
    mixed *= _mixer()
    mixed &= ~_INDEX_MASK
    mixed |= np.arange(count, dtype=np.uint64)
    mixed.sort()
    groups = mixed >> np.uint64(_INDEX_BITS)
    same = np.flatnonzero(groups[1:] == groups[:-1])
    if not same.size:
        return None
    numbers = (mixed & _INDEX_MASK).astype(np.intp)
    first, second = numbers[same], numbers[same + 1]
    nearest = int(np.argmin(second))
    if keys.same(int(first[nearest]), int(second[nearest])):
        return keys.text(int(second[nearest]))
    best: int | None = None
    searched: set[int] = set()
    for pair in np.argsort(second, kind="stable").tolist():
        candidate = int(second[pair])
        if best is not None and candidate >= best:
            break
        if keys.same(int(first[pair]), candidate):
            best = candidate
            break
        group = int(groups[same[pair]])
        if group not in searched:  # a false pair: search its whole group key by key
            searched.add(group)
            start, stop = np.searchsorted(groups, [group, group + 1])
            found = repeat_in(keys, numbers[start:stop].tolist())
            if found is not None and (best is None or found < best):
                best = found
    return None if best is None else keys.text(best)


def repeat_in(keys: Keys, members: list[int]) -> int | None:
    """The first of `members` (key numbers in order) equal to an earlier one of its object."""
    seen: set[tuple[int, str]] = set()
    for member in members:
        identity = (int(keys.objects[member]), keys.text(member))
        if identity in seen:
            return member
        seen.add(identity)
    return None


@lru_cache(maxsize=1)
def _mixer() -> np.uint64:
    """A random odd 64-bit multiplier (a bijection of 64-bit numbers), one per process."""
    return np.uint64(random.SystemRandom().randrange(1, 1 << 64, 2))
