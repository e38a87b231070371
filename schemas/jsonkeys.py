"""The earliest repeated key of a JSON value, given where its keys are, their objects and hashes.

`schemas.jsonscan` finds the keys (their quotes), the object each belongs to and a hash of each key's
decoded text; this module turns those arrays into the answer: the earliest key equal to an earlier
key of its object, exactly (a hash collision costs a search, never a wrong answer).
"""

from __future__ import annotations

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


_FEW_VALUES = 8
"""Up to this many distinct repeated hashes, the keys holding them are picked out one value at a
time (a pass over the hashes each); more, and every key is a candidate."""


def repeated_hashes(hashes: npt.NDArray[np.uint64]) -> Positions:
    """The numbers (ascending) of the keys that may repeat another: those whose hash (46 bits)
    another key has when few values repeat, all keys otherwise; empty when no two hashes are equal.
    """
    count = hashes.size
    ordered = np.sort(hashes)
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return np.empty(0, np.intp)
    repeated = ordered[1:][same]  # sorted: its distinct values start where it changes
    values = repeated[np.flatnonzero(repeated[1:] != repeated[:-1]) + 1]
    if values.size >= _FEW_VALUES:
        return np.arange(count, dtype=np.intp)
    values = np.append(repeated[:1], values)
    chosen = hashes == values[0]
    for value in values[1:]:
        chosen |= hashes == value
    candidates: Positions = np.flatnonzero(chosen)
    return candidates


def first_repeat(keys: Keys, hashes: npt.NDArray[np.uint64], candidates: Positions) -> str | None:
    """The earliest key equal to an earlier key of its object, among `candidates` (ascending key
    numbers, `repeated_hashes`), given each key's object and hash.

    A stable sort of (object, hash) puts the candidates of one object with one hash next to each
    other in their order (objects come in runs: the sort is mostly merging). Neighbours with equal
    values are candidate pairs; the pair with the smallest second key is almost always a genuine
    repeat, confirmed by decoding both. Otherwise (colliding hashes), pairs are taken by their second
    key and a group holding a false pair is searched key by key, so the answer stays exact.
    """
    identities = (keys.objects[candidates].astype(np.uint64) << np.uint64(46)) | hashes[candidates]
    order = np.argsort(identities, kind="stable")
    ordered = identities[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if not same.size:
        return None
    first, second = candidates[order[same]], candidates[order[same + 1]]
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
        group = int(same[pair])
        start = int(np.searchsorted(ordered, ordered[group], side="left"))
        if start not in searched:  # a false pair: search its whole group key by key
            searched.add(start)
            stop = int(np.searchsorted(ordered, ordered[group], side="right"))
            found = repeat_in(keys, candidates[order[start:stop]].tolist())
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
