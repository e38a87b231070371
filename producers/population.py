"""The simulated member population of the cluster, sized after the September 2020 figures.

Source: `../shared/seed/mic-2020-overview.txt`. At `scale=1` the population holds

- 17,000 participants in Moscow (region `77`), 90% of them small or medium; among them 56 universities
  and 40 research institutes ("more than 50 leading higher educational establishments" and leading
  research organisations) and 87 companies of state corporations (63 Rostec, 14 Rosatom,
  10 Roscosmos);
- 5,709 regional partners (companies and sole proprietors) from 73 regions other than Moscow: 62% in
  Moscow Region (`50`), 5% in St Petersburg (`78`), the rest spread over 71 further regions.

Category sizes are exact quotas (largest remainder), not random draws, so the proportions hold for
every seed; `scale` multiplies every count, keeping at least one member of each non-empty category.
Sectors are drawn at random with weights per kind of member. Everything is deterministic for a given
`random.Random`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from schemas.fields import CompanySize, MemberKind, MemberStatus, Sector, StateCorporation
from schemas.inn import complete_inn

MOSCOW = "77"
MOSCOW_REGION = "50"
ST_PETERSBURG = "78"

MOSCOW_PARTICIPANTS = 17_000
REGIONAL_PARTNERS = 5_709
UNIVERSITIES = 56
RESEARCH_INSTITUTES = 40
STATE_CORPORATION_COMPANIES: dict[StateCorporation, int] = {"rostec": 63, "rosatom": 14, "roscosmos": 10}
PARTICIPANT_SME_SHARE = 0.90
MOSCOW_SOLE_PROPRIETOR_SHARE = 0.02
REGIONAL_SOLE_PROPRIETOR_SHARE = 0.20
MOSCOW_REGION_SHARE = 0.62
ST_PETERSBURG_SHARE = 0.05
#: The 73 regions of regional partners: codes 01–72 (Moscow Region 50 among them) and St Petersburg.
PARTNER_REGIONS: tuple[str, ...] = (*(f"{code:02d}" for code in range(1, 73)), ST_PETERSBURG)

_MOSCOW_COMPANY_SECTORS: dict[Sector, float] = {
    "it": 24, "electronics": 10, "instrument_engineering": 8, "pharma": 7, "biomed": 7, "aviation": 4,
    "space": 2, "new_materials": 6, "metal_processing": 6, "energy": 5, "transport": 5,
    "light_industry": 4, "nuclear": 1, "education": 2, "other": 9,
}
_REGIONAL_SECTORS: dict[Sector, float] = {
    "metal_processing": 25, "instrument_engineering": 18, "light_industry": 12, "electronics": 8,
    "new_materials": 7, "it": 8, "energy": 5, "transport": 5, "pharma": 3, "biomed": 2, "aviation": 2,
    "other": 5,
}
_INSTITUTE_SECTORS: dict[Sector, float] = {
    "nuclear": 3, "biomed": 4, "new_materials": 4, "space": 2, "aviation": 2, "electronics": 3,
    "pharma": 3, "instrument_engineering": 2, "energy": 2,
}
_STATE_CORPORATION_SECTORS: dict[StateCorporation, dict[Sector, float]] = {
    "rostec": {"aviation": 4, "electronics": 4, "instrument_engineering": 3, "metal_processing": 2},
    "rosatom": {"nuclear": 6, "energy": 2, "new_materials": 1},
    "roscosmos": {"space": 6, "instrument_engineering": 1},
}

_NAME_STEMS = (
    "Техно", "Аэро", "Нано", "Био", "Инфо", "Микро", "Электро", "Гео", "Термо", "Квант", "Спектр",
    "Вектор", "Импульс", "Синтез", "Орбита", "Прибор", "Лазер", "Фарм", "Метал", "Текстиль",
)
_NAME_ENDINGS = ("систем", "лаб", "тех", "пром", "сервис", "инжиниринг", "проект", "софт", "маш", "трейд")


@dataclass(frozen=True, slots=True)
class Company:
    """One cluster member: the profile its `member.joined` event carries."""

    company_id: str
    name: str
    kind: MemberKind
    status: MemberStatus
    region_code: str
    sector: Sector
    size: CompanySize
    state_corporation: StateCorporation | None


def scaled(count: int, scale: float) -> int:
    """`count` times `scale`, rounded, but at least 1 when `count` is positive."""
    if count <= 0:
        return 0
    return max(1, round(count * scale))


def split_by_shares(total: int, weights: Sequence[float]) -> list[int]:
    """Split `total` into integer parts proportional to `weights` (largest remainder method)."""
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


class _InnIssuer:
    """Issues unique, check-digit-valid INNs whose tax-office prefix is the member's region."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.issued: set[str] = set()

    def issue(self, region_code: str, *, sole_proprietor: bool) -> str:
        serial_digits = 6 if sole_proprietor else 5
        while True:
            office = f"{self._rng.randrange(1, 100):02d}"
            serial = f"{self._rng.randrange(10**serial_digits):0{serial_digits}d}"
            inn = complete_inn(f"{region_code}{office}{serial}")
            if inn not in self.issued:
                self.issued.add(inn)
                return inn


def _pick(rng: random.Random, weights: dict[Sector, float]) -> Sector:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _company_name(rng: random.Random, sole_proprietor: bool) -> str:
    stem = f"{rng.choice(_NAME_STEMS)}{rng.choice(_NAME_ENDINGS)}"
    if sole_proprietor:
        return f"ИП {stem.capitalize()} {rng.randrange(1, 1000)}"
    return f'ООО "{stem}-{rng.randrange(1, 10_000)}"'


def _moscow_participants(rng: random.Random, scale: float, inns: _InnIssuer) -> list[Company]:
    total = scaled(MOSCOW_PARTICIPANTS, scale)
    universities = scaled(UNIVERSITIES, scale)
    institutes = scaled(RESEARCH_INSTITUTES, scale)
    corporations = {corp: scaled(n, scale) for corp, n in STATE_CORPORATION_COMPANIES.items()}
    members: list[Company] = []

    def add(kind: MemberKind, sector: Sector, state_corporation: StateCorporation | None, name: str) -> None:
        sole = kind == "sole_proprietor"
        inn = inns.issue(MOSCOW, sole_proprietor=sole)
        # size is assigned over the whole group by _assign_participant_sizes
        members.append(Company(inn, name, kind, "participant", MOSCOW, sector, "small", state_corporation))

    add("university", "education", None, "Московский государственный университет им. М. В. Ломоносова")
    for number in range(2, universities + 1):
        add("university", "education", None, f"Московский университет № {number}")
    add("research_institute", "nuclear", None, "НИЦ «Курчатовский институт»")
    for number in range(2, institutes + 1):
        add("research_institute", _pick(rng, _INSTITUTE_SECTORS), None, f"НИИ № {number}")
    for corp, count in corporations.items():
        for _ in range(count):
            add("company", _pick(rng, _STATE_CORPORATION_SECTORS[corp]), corp, _company_name(rng, False))
    others = max(0, total - len(members))
    sole_proprietors = round(others * MOSCOW_SOLE_PROPRIETOR_SHARE)
    for index in range(others):
        kind: MemberKind = "sole_proprietor" if index < sole_proprietors else "company"
        add(kind, _pick(rng, _MOSCOW_COMPANY_SECTORS), None, _company_name(rng, kind == "sole_proprietor"))
    return _assign_participant_sizes(rng, members)


def _assign_participant_sizes(rng: random.Random, members: list[Company]) -> list[Company]:
    """Sizes with exactly `PARTICIPANT_SME_SHARE` small or medium; large ones are, first of all,
    universities, then institutes and state-corporation companies, then ordinary companies."""
    large_quota = len(members) - round(len(members) * PARTICIPANT_SME_SHARE)

    def large_priority(member: Company) -> float:
        if member.kind == "university":
            return 0.0
        if member.kind == "research_institute" or member.state_corporation is not None:
            return 1.0 + rng.random()
        if member.kind == "sole_proprietor":
            return 9.0
        return 2.0 + rng.random()

    order = sorted(range(len(members)), key=lambda i: large_priority(members[i]))
    large = set(order[:large_quota])
    sized: list[Company] = []
    for index, member in enumerate(members):
        size: CompanySize
        if index in large:
            size = "large"
        else:
            size = "small" if member.kind == "sole_proprietor" or rng.random() < 0.7 else "medium"
        sized.append(replace(member, size=size))
    return sized




def _region_counts(rng: random.Random, total: int) -> dict[str, int]:
    """Partners per region: 62% Moscow Region, 5% St Petersburg, the rest over the other regions,
    with uneven (shuffled, decreasing) weights and at least one partner each while numbers allow."""
    in_moscow_region = round(total * MOSCOW_REGION_SHARE)
    in_st_petersburg = round(total * ST_PETERSBURG_SHARE)
    others = [code for code in PARTNER_REGIONS if code not in (MOSCOW_REGION, ST_PETERSBURG)]
    rng.shuffle(others)
    rest = total - in_moscow_region - in_st_petersburg
    floor = 1 if rest >= len(others) else 0
    parts = split_by_shares(rest - floor * len(others), [1.0 / (rank + 4) for rank in range(len(others))])
    counts = {code: part + floor for code, part in zip(others, parts, strict=True)}
    counts[MOSCOW_REGION] = in_moscow_region
    counts[ST_PETERSBURG] = in_st_petersburg
    return counts


def _regional_partners(rng: random.Random, scale: float, inns: _InnIssuer) -> list[Company]:
    partners: list[Company] = []
    for region, count in _region_counts(rng, scaled(REGIONAL_PARTNERS, scale)).items():
        for _ in range(count):
            sole = rng.random() < REGIONAL_SOLE_PROPRIETOR_SHARE
            kind: MemberKind = "sole_proprietor" if sole else "company"
            sizes: tuple[CompanySize, ...] = ("small", "medium", "large")
            size = "small" if sole else rng.choices(sizes, (70, 25, 5))[0]
            inn = inns.issue(region, sole_proprietor=sole)
            partners.append(Company(inn, _company_name(rng, sole), kind, "regional_partner", region,
                                    _pick(rng, _REGIONAL_SECTORS), size, None))
    return partners


@dataclass(frozen=True)
class Population:
    """The members to be simulated, and every INN issued for them (to keep outsiders distinct)."""

    members: tuple[Company, ...]
    issued_inns: frozenset[str]


def build_population(rng: random.Random, scale: float = 1.0) -> Population:
    """The cluster's members at `scale` (1.0 = the seed text's figures), in a shuffled join order."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    inns = _InnIssuer(rng)
    members = _moscow_participants(rng, scale, inns) + _regional_partners(rng, scale, inns)
    rng.shuffle(members)
    return Population(tuple(members), frozenset(inns.issued))
