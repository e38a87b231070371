"""The simulated population against the seed text's figures (full size, pure Python)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from producers.population import Population, build_population, split_by_shares
from schemas.inn import is_valid_inn


@pytest.fixture(scope="module")
def population() -> Population:
    return build_population(random.Random("7/population"))


def test_moscow_participants(population: Population) -> None:
    participants = [m for m in population.members if m.status == "participant"]
    assert 16_500 <= len(participants) <= 17_500
    assert {m.region_code for m in participants} == {"77"}
    sme_share = sum(m.size != "large" for m in participants) / len(participants)
    assert sme_share == pytest.approx(0.90, abs=0.005)
    kinds = Counter(m.kind for m in participants)
    assert kinds["university"] > 50
    assert kinds["research_institute"] > 0
    corporations = Counter(m.state_corporation for m in participants if m.state_corporation)
    assert corporations == {"rostec": 63, "rosatom": 14, "roscosmos": 10}


def test_regional_partners(population: Population) -> None:
    partners = [m for m in population.members if m.status == "regional_partner"]
    assert len(partners) == 5_709
    regions = Counter(m.region_code for m in partners)
    assert len(regions) == 73
    assert "77" not in regions
    assert regions["50"] / len(partners) == pytest.approx(0.62, abs=0.01)
    assert regions["78"] / len(partners) == pytest.approx(0.05, abs=0.01)
    assert {m.kind for m in partners} == {"company", "sole_proprietor"}
    assert all(m.state_corporation is None for m in partners)


def test_inns_valid_unique_and_by_kind(population: Population) -> None:
    inns = [m.company_id for m in population.members]
    assert len(set(inns)) == len(inns)
    assert set(inns) == population.issued_inns
    assert all(is_valid_inn(inn) for inn in inns)
    for member in population.members:
        assert len(member.company_id) == (12 if member.kind == "sole_proprietor" else 10)
        assert member.company_id.startswith(member.region_code)


def test_sectors_follow_the_kind_of_member(population: Population) -> None:
    sectors = Counter(m.sector for m in population.members)
    assert len(sectors) == 15
    assert all(m.sector == "education" for m in population.members if m.kind == "university")
    rosatom = {m.sector for m in population.members if m.state_corporation == "rosatom"}
    assert rosatom <= {"nuclear", "energy", "new_materials"}


def test_scaled_population_keeps_every_category() -> None:
    small = build_population(random.Random("7/population"), scale=0.01)
    assert 200 <= len(small.members) <= 250
    corporations = Counter(m.state_corporation for m in small.members if m.state_corporation)
    assert set(corporations) == {"rostec", "rosatom", "roscosmos"}
    assert {"university", "research_institute"} <= {m.kind for m in small.members}
    assert {m.status for m in small.members} == {"participant", "regional_partner"}


def test_population_is_deterministic_and_seed_dependent() -> None:
    first = build_population(random.Random("3/population"), scale=0.05)
    assert first == build_population(random.Random("3/population"), scale=0.05)
    assert first != build_population(random.Random("4/population"), scale=0.05)


def test_split_by_shares_is_exact() -> None:
    assert split_by_shares(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(split_by_shares(1884, [1 / (r + 4) for r in range(71)])) == 1884


def test_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="scale"):
        build_population(random.Random(1), scale=0)
