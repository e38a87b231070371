"""INN check digits (Federal Tax Service algorithm)."""

from __future__ import annotations

import random

import pytest

from schemas.inn import complete_inn, is_valid_inn

# Published INNs of well-known companies (legal entities) and a valid sole-proprietor number.
KNOWN_VALID = ["7707083893", "7736207543", "7736050003", "7702070139", "500100732259"]


@pytest.mark.parametrize("inn", KNOWN_VALID)
def test_known_inns_are_valid(inn: str) -> None:
    assert is_valid_inn(inn)


@pytest.mark.parametrize("inn", KNOWN_VALID)
def test_changing_any_check_digit_invalidates(inn: str) -> None:
    check_positions = [9] if len(inn) == 10 else [10, 11]
    for position in check_positions:
        for digit in "0123456789":
            if digit != inn[position]:
                assert not is_valid_inn(inn[:position] + digit + inn[position + 1 :])


@pytest.mark.parametrize(
    "value",
    ["", "770708389", "77070838930", "7707083893 ", "770708389a", "1234567890123", "７７０７０８３８９３"],
)
def test_malformed_inns_are_invalid(value: str) -> None:
    assert not is_valid_inn(value)


def test_complete_inn_produces_valid_numbers_of_both_lengths() -> None:
    rng = random.Random(7)
    for _ in range(500):
        for length in (9, 10):
            prefix = "".join(rng.choice("0123456789") for _ in range(length))
            inn = complete_inn(prefix)
            assert inn.startswith(prefix)
            assert len(inn) == length + 1 + (length == 10)
            assert is_valid_inn(inn)


def test_complete_inn_matches_known_numbers() -> None:
    assert complete_inn("770708389") == "7707083893"
    assert complete_inn("5001007322") == "500100732259"


@pytest.mark.parametrize("prefix", ["", "12345678", "12345678901", "12345678x", "１２３４５６７８９"])
def test_complete_inn_rejects_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError):
        complete_inn(prefix)
