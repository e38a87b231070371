"""Russian taxpayer numbers (INN) and their check digits, by the Federal Tax Service algorithm.

A legal entity's INN has 10 digits, the last a check digit over the first nine; a sole proprietor's
(an individual's) has 12 digits, the last two check digits: the 11th over the first ten, the 12th over
the first eleven. Each check digit is `(sum of digit * weight) mod 11 mod 10`.
"""

from __future__ import annotations

from functools import lru_cache
from operator import mul

_WEIGHTS_10 = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_WEIGHTS_11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_WEIGHTS_12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_ZERO = ord("0")


def _check_digit(digits: bytes, weights: tuple[int, ...]) -> int:
    """The check digit over ASCII `digits` (as many as `weights`), as an ASCII code."""
    total: int = sum(map(mul, digits, weights)) - _ZERO * sum(weights)
    return _ZERO + total % 11 % 10


def is_valid_inn(value: str) -> bool:
    """True when `value` is 10 or 12 ASCII digits whose check digit(s) are correct."""
    return len(value) in (10, 12) and _valid_digits(value)


@lru_cache(maxsize=1 << 16)
def _valid_digits(value: str) -> bool:
    """Cached (bounded, keys of 10-12 characters): the same few thousand companies recur."""
    if not value.isascii() or not value.isdigit():
        return False
    digits = value.encode()
    if len(digits) == 10:
        return digits[9] == _check_digit(digits, _WEIGHTS_10)
    return digits[10] == _check_digit(digits, _WEIGHTS_11) and digits[11] == _check_digit(digits, _WEIGHTS_12)


def complete_inn(prefix: str) -> str:
    """Append the check digit(s) to a 9-digit (legal entity) or 10-digit (sole proprietor) prefix.

    Raises ValueError for any other input.
    """
    if len(prefix) not in (9, 10) or not prefix.isascii() or not prefix.isdigit():
        raise ValueError(f"an INN prefix is 9 or 10 ASCII digits, got {prefix!r}")
    digits = prefix.encode()
    if len(digits) == 9:
        return prefix + chr(_check_digit(digits, _WEIGHTS_10))
    eleven = digits + bytes((_check_digit(digits, _WEIGHTS_11),))
    return eleven.decode() + chr(_check_digit(eleven, _WEIGHTS_12))
