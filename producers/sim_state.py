"""The simulator's world state: who is a member now, and which orders, patents and factoring requests
are open. Plain data structures with O(1) add, remove and uniform random choice.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, TypeVar

from producers.population import MOSCOW, Company
from schemas.fields import OrderIndustry, PatentOffer, Sector

T = TypeVar("T")

#: Sectors whose members take OEM orders of an industry (the first one is the industry itself).
MANUFACTURING_SECTORS: dict[OrderIndustry, tuple[Sector, ...]] = {
    "metal_processing": ("metal_processing", "new_materials"),
    "instrument_engineering": ("instrument_engineering", "electronics"),
    "light_industry": ("light_industry",),
}


class IndexedSet(Generic[T]):
    """A set with O(1) add, remove and uniform random choice (list + position map)."""

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._items: list[T] = []
        self._positions: dict[T, int] = {}
        for item in items:
            self.add(item)

    def add(self, item: T) -> None:
        if item not in self._positions:
            self._positions[item] = len(self._items)
            self._items.append(item)

    def remove(self, item: T) -> None:
        position = self._positions.pop(item)
        last = self._items.pop()
        if position < len(self._items):
            self._items[position] = last
            self._positions[last] = position

    def choice(self, rng: random.Random) -> T:
        return self._items[rng.randrange(len(self._items))]

    def __contains__(self, item: object) -> bool:
        return item in self._positions

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Membership:
    """Members: those still to join (in join order), active ones with indexes, and those who left."""

    pending: list[Company]
    profiles: dict[str, Company] = field(default_factory=dict)
    active: IndexedSet[str] = field(default_factory=IndexedSet)
    left: IndexedSet[str] = field(default_factory=IndexedSet)
    regional_by_sector: dict[Sector, IndexedSet[str]] = field(default_factory=dict)
    active_by_sector: dict[Sector, IndexedSet[str]] = field(default_factory=dict)
    acted: set[str] = field(default_factory=set)
    next_pending: int = 0

    def has_pending(self) -> bool:
        return self.next_pending < len(self.pending)

    def take_pending(self) -> Company:
        company = self.pending[self.next_pending]
        self.next_pending += 1
        return company

    def join(self, company: Company) -> None:
        self.profiles[company.company_id] = company
        if company.company_id in self.left:
            self.left.remove(company.company_id)
        self.active.add(company.company_id)
        self._index(company)

    def leave(self, company_id: str) -> None:
        self._unindex(self.profiles[company_id])
        self.active.remove(company_id)
        self.left.add(company_id)

    def update(self, company: Company) -> None:
        self._unindex(self.profiles[company.company_id])
        self.profiles[company.company_id] = company
        self._index(company)

    def acts(self, company_id: str) -> None:
        """Record that the member is named (as company or manufacturer) outside `mic.membership`."""
        self.acted.add(company_id)

    def _index(self, company: Company) -> None:
        self.active_by_sector.setdefault(company.sector, IndexedSet()).add(company.company_id)
        if company.region_code != MOSCOW:
            self.regional_by_sector.setdefault(company.sector, IndexedSet()).add(company.company_id)

    def _unindex(self, company: Company) -> None:
        self.active_by_sector[company.sector].remove(company.company_id)
        if company.region_code != MOSCOW:
            self.regional_by_sector[company.sector].remove(company.company_id)

    def manufacturer_for(self, industry: OrderIndustry, customer: str, rng: random.Random) -> str | None:
        """An active member to take an order of `industry`: most often a regional partner of a
        matching sector, else a member of a matching sector, else any member; never the customer."""
        sectors = MANUFACTURING_SECTORS[industry]
        pools: list[IndexedSet[str]] = []
        if rng.random() < 0.7:
            pools += [self.regional_by_sector[s] for s in sectors if s in self.regional_by_sector]
        pools += [self.active_by_sector[s] for s in sectors if s in self.active_by_sector]
        pools.append(self.active)
        for pool in pools:
            for _ in range(3):
                if len(pool) == 0:
                    break
                candidate = pool.choice(rng)
                if candidate != customer:
                    return candidate
        return None

    def idle_member(self, rng: random.Random) -> str | None:
        """An active member never named outside `mic.membership`, or None if a few random picks find
        none. Only such members leave: all their events share one partition, so whatever order the
        stream reads the four topics in, no event of theirs can meet their `member.left` first."""
        for _ in range(5):
            candidate = self.active.choice(rng)
            if candidate not in self.acted:
                return candidate
        return None


@dataclass(eq=False)
class Order:
    order_id: str
    customer: str
    industry: OrderIndustry
    budget: Decimal
    state: str = "placed"


@dataclass(eq=False)
class Patent:
    patent_id: str
    holder: str
    offer: PatentOffer
    price: Decimal


@dataclass(eq=False)
class FactoringRequest:
    request_id: str
    supplier: str
    invoice: Decimal
    state: str = "requested"
    advance: Decimal = Decimal(0)


@dataclass
class OpenEntities:
    """Entities whose lifecycle has not ended; the simulator advances them at random."""

    orders: IndexedSet[Order] = field(default_factory=IndexedSet)
    patents: IndexedSet[Patent] = field(default_factory=IndexedSet)
    factoring: IndexedSet[FactoringRequest] = field(default_factory=IndexedSet)
