"""The simulated platform: a stream of valid events with coherent lifecycles.

`World.next_event()` advances the simulated clock and returns the next valid event:

- members join in the population's order (a share of the stream while some are still to join, and
  always before they act); later some update their profile, a few leave and some of those join
  again. Only members never named outside `mic.membership` leave (see `Membership.idle_member`), so
  the ground truth holds whatever order the stream reads the four topics in;
- OEM orders: placed → accepted by a member manufacturer (most often a regional partner of a matching
  sector) → completed, or cancelled from placed or accepted; light-industry orders only from
  2020-09-18 (event time);
- patents of the four kinds: listed → deals (licenses repeat, a sale ends the listing) or withdrawn;
- factoring: requested → funded (advance ≤ invoice) → repaid, or defaulted (5%).

Open entities are advanced with probability n / (n + 30) (n = how many are open), which keeps their
number bounded. Everything is drawn from one seeded `random.Random`: the same seed gives the same
events, event ids included.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TypeVar

from producers.population import Company, Population
from producers.sim_state import FactoringRequest, IndexedSet, Membership, OpenEntities, Order, Patent
from schemas.events import (
    Event,
    FactoringDefaulted,
    FactoringFunded,
    FactoringRepaid,
    FactoringRequested,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    OrderAccepted,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    PatentDealClosed,
    PatentListed,
    PatentWithdrawn,
    Payload,
)
from schemas.fields import CompanySize, OrderIndustry, PatentDeal, PatentKind, PatentOffer, Sector
from schemas.inn import complete_inn

EntityT = TypeVar("EntityT", Order, Patent, FactoringRequest)

MSK = timezone(timedelta(hours=3))
SIMULATION_START = datetime(2020, 5, 1, 9, 0, tzinfo=MSK)
LIGHT_INDUSTRY_FROM = date(2020, 9, 18)
SOURCE = "mic-simulator"

JOIN_SHARE = 0.35
FAMILY_WEIGHTS = {"order": 35, "patent": 30, "factoring": 25, "member": 10}
OPEN_POOL_HALF = 30
DEFAULT_RATE = Decimal("0.05")
_CENT = Decimal("0.01")

_ORDER_ITEMS: dict[OrderIndustry, tuple[str, ...]] = {
    "metal_processing": ("Корпус прибора", "Фрезерная обработка деталей", "Кронштейн стальной", "Вал"),
    "instrument_engineering": ("Печатная плата", "Датчик давления", "Блок питания", "Контроллер"),
    "light_industry": ("Спецодежда", "Медицинские халаты", "Рюкзак", "Текстильные чехлы"),
}
_PATENT_KINDS: tuple[PatentKind, ...] = ("invention", "utility_model", "industrial_design", "trademark")
_PATENT_KIND_WEIGHTS = (40, 25, 15, 20)
_OFFERS: tuple[PatentOffer, ...] = ("sale", "license", "both")
_OFFER_WEIGHTS = (30, 40, 30)
_DEALS: tuple[PatentDeal, ...] = ("sale", "license")
_SIZE_CHANGES: dict[CompanySize, tuple[CompanySize, ...]] = {
    "small": ("medium",), "medium": ("small", "large"), "large": ("medium",),
}
_NEW_SECTORS: tuple[Sector, ...] = ("it", "electronics", "new_materials", "biomed", "other")
_PATENT_TOPICS = ("Способ получения", "Устройство для", "Состав для", "Система контроля", "Материал")


def rub(rng: random.Random, low: int, high: int) -> Decimal:
    """A random amount of roubles in [low, high) with kopecks."""
    return Decimal(rng.randrange(low * 100, high * 100)).scaleb(-2)


def share_of(amount: Decimal, rng: random.Random, low: float, high: float) -> Decimal:
    """`amount` times a random factor in [low, high], rounded down to kopecks (never above `amount`
    when `high` ≤ 1)."""
    factor = Decimal(str(round(rng.uniform(low, high), 4)))
    return max(_CENT, (amount * factor).quantize(_CENT, rounding="ROUND_DOWN"))


class World:
    """The simulated platform's state and its next valid event."""

    def __init__(self, population: Population, rng: random.Random, *, start: datetime = SIMULATION_START,
                 clock_step_s: int = 900) -> None:
        self.rng = rng
        self.members = Membership(pending=list(population.members))
        self.open = OpenEntities()
        self.clock = start
        self.clock_step_s = clock_step_s
        self._population_inns = population.issued_inns
        self._run_tag = f"{rng.getrandbits(24):06x}"
        self._counters = {"order": 0, "patent": 0, "factoring": 0}

    # -- helpers ---------------------------------------------------------------------------------

    def new_uuid(self, rng: random.Random | None = None) -> str:
        """A UUID (version 4 layout) drawn from the seeded generator."""
        return str(uuid.UUID(int=(rng or self.rng).getrandbits(128), version=4))

    def outsider_inn(self, rng: random.Random) -> str:
        """A valid INN of a company that is not (and never will be) in the population."""
        while True:
            inn = complete_inn(f"{rng.randrange(1, 100):02d}{rng.randrange(10**7):07d}")
            if inn not in self._population_inns:
                return inn

    def make_event(self, event_type: str, company_id: str, payload: Payload,
                   rng: random.Random | None = None) -> Event:
        generator = rng or self.rng
        trace_id = f"{generator.getrandbits(64):016x}" if generator.random() < 0.1 else None
        return Event(event_id=self.new_uuid(generator), event_type=event_type, schema_version=1,
                     occurred_at=self.clock, source=SOURCE, company_id=company_id,
                     payload=payload, trace_id=trace_id)

    def _new_id(self, family: str, prefix: str) -> str:
        self._counters[family] += 1
        return f"{prefix}-{self._run_tag}-{self._counters[family]:07d}"

    def _advance_open(self, open_count: int) -> bool:
        return open_count > 0 and self.rng.random() < open_count / (open_count + OPEN_POOL_HALF)

    def order_payload(self, order_id: str, rng: random.Random) -> OrderPlaced:
        """A fresh `order.placed` payload at the current clock (light industry only once open)."""
        industries: list[OrderIndustry] = ["metal_processing", "instrument_engineering"]
        weights = [55, 45]
        if self.clock.date() >= LIGHT_INDUSTRY_FROM:
            industries.append("light_industry")
            weights.append(20)
        industry = rng.choices(industries, weights)[0]
        deadline = self.clock.date() + timedelta(days=rng.randrange(14, 120))
        return OrderPlaced(order_id=order_id, industry=industry, title=rng.choice(_ORDER_ITEMS[industry]),
                           quantity=rng.randrange(1, 5000), budget_rub=rub(rng, 50_000, 30_000_000),
                           deadline=deadline)

    # -- the next event ----------------------------------------------------------------------------

    def next_event(self) -> Event:
        """Advance the clock and return the next valid event."""
        self.clock += timedelta(seconds=self.rng.randint(self.clock_step_s // 2, self.clock_step_s * 3 // 2))
        members = self.members
        if members.has_pending() and (len(members.active) < 2 or self.rng.random() < JOIN_SHARE):
            return self._join(members.take_pending())
        family = self.rng.choices(list(FAMILY_WEIGHTS), list(FAMILY_WEIGHTS.values()))[0]
        event = None
        if family == "member":
            event = self._member_change()
        elif family == "patent":
            event = self._patent_step()
        elif family == "factoring":
            event = self._factoring_step()
        return event or self._order_step()

    def _join(self, company: Company) -> Event:
        self.members.join(company)
        payload = MemberJoined(name=company.name, kind=company.kind, status=company.status,
                               region_code=company.region_code, sector=company.sector, size=company.size,
                               state_corporation=company.state_corporation)
        return self.make_event("member.joined", company.company_id, payload)

    def _member_change(self) -> Event | None:
        members, rng = self.members, self.rng
        roll = rng.random()
        if roll < 0.04 and len(members.left) > 0:
            return self._join(members.profiles[members.left.choice(rng)])
        if roll < 0.12:
            idle = members.idle_member(rng)
            if idle is not None:
                members.leave(idle)
                reason = rng.choice([None, "Прекращение деятельности", "Реорганизация"])
                return self.make_event("member.left", idle, MemberLeft(reason=reason))
        company = members.profiles[members.active.choice(rng)]
        return self._member_update(company)

    def _member_update(self, company: Company) -> Event:
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            changed = replace(company, size=rng.choice(_SIZE_CHANGES[company.size]))
            payload = MemberUpdated(size=changed.size)
        elif roll < 0.8:
            changed = replace(company, name=f"{company.name} (новое наименование)"[:300])
            payload = MemberUpdated(name=changed.name)
        else:
            changed = replace(company, sector=rng.choice(_NEW_SECTORS))
            payload = MemberUpdated(sector=changed.sector)
        self.members.update(changed)
        return self.make_event("member.updated", company.company_id, payload)

    def _order_step(self) -> Event:
        rng, members = self.rng, self.members
        if self._advance_open(len(self.open.orders)):
            order = self.open.orders.choice(rng)
            members.acts(order.customer)
            if order.state == "placed" and rng.random() < 0.75:
                manufacturer = members.manufacturer_for(order.industry, order.customer, rng)
                if manufacturer is not None:
                    order.state = "accepted"
                    members.acts(manufacturer)
                    payload_a = OrderAccepted(order_id=order.order_id, manufacturer_id=manufacturer)
                    return self.make_event("order.accepted", order.customer, payload_a)
            self.open.orders.remove(order)
            if order.state == "accepted" and rng.random() < 0.9:
                amount = share_of(order.budget, rng, 0.8, 1.05)
                return self.make_event("order.completed", order.customer,
                                       OrderCompleted(order_id=order.order_id, amount_rub=amount))
            reason = rng.choice([None, "Изменились требования", "Нет подходящего исполнителя"])
            return self.make_event("order.cancelled", order.customer,
                                   OrderCancelled(order_id=order.order_id, reason=reason))
        customer = members.active.choice(rng)
        payload = self.order_payload(self._new_id("order", "ORD"), rng)
        self._open(self.open.orders, Order(payload.order_id, customer, payload.industry, payload.budget_rub),
                   customer)
        return self.make_event("order.placed", customer, payload)

    def _patent_step(self) -> Event:
        rng, members = self.rng, self.members
        if self._advance_open(len(self.open.patents)):
            patent = self.open.patents.choice(rng)
            members.acts(patent.holder)
            if rng.random() < 0.2:
                self.open.patents.remove(patent)
                withdrawn = PatentWithdrawn(patent_id=patent.patent_id)
                return self.make_event("patent.withdrawn", patent.holder, withdrawn)
            deal: PatentDeal = patent.offer if patent.offer != "both" else rng.choices(_DEALS, (3, 7))[0]
            if deal == "sale":
                self.open.patents.remove(patent)
                amount = share_of(patent.price, rng, 0.7, 1.0)
            else:
                amount = share_of(patent.price, rng, 0.05, 0.3)
            buyer = members.active.choice(rng) if rng.random() < 0.7 else self.outsider_inn(rng)
            if buyer == patent.holder:
                buyer = self.outsider_inn(rng)
            closed = PatentDealClosed(patent_id=patent.patent_id, buyer_id=buyer, deal=deal,
                                      amount_rub=amount)
            return self.make_event("patent.deal_closed", patent.holder, closed)
        holder = members.active.choice(rng)
        kind = rng.choices(_PATENT_KINDS, _PATENT_KIND_WEIGHTS)[0]
        offer = rng.choices(_OFFERS, _OFFER_WEIGHTS)[0]
        listed = PatentListed(patent_id=self._new_id("patent", "PAT"), kind=kind,
                              title=f"{rng.choice(_PATENT_TOPICS)} № {rng.randrange(1, 100_000)}",
                              offer=offer, price_rub=rub(rng, 100_000, 20_000_000))
        self._open(self.open.patents, Patent(listed.patent_id, holder, offer, listed.price_rub), holder)
        return self.make_event("patent.listed", holder, listed)

    def _factoring_step(self) -> Event:
        rng, members = self.rng, self.members
        if self._advance_open(len(self.open.factoring)):
            request = self.open.factoring.choice(rng)
            members.acts(request.supplier)
            if request.state == "requested":
                request.state = "funded"
                request.advance = share_of(request.invoice, rng, 0.7, 0.9)
                fee = round(rng.uniform(0.01, 0.15), 4)
                funded = FactoringFunded(request_id=request.request_id, advance_rub=request.advance,
                                         fee_rate=fee)
                return self.make_event("factoring.funded", request.supplier, funded)
            self.open.factoring.remove(request)
            if rng.random() < DEFAULT_RATE:
                outstanding = share_of(request.advance, rng, 0.2, 1.0)
                defaulted = FactoringDefaulted(request_id=request.request_id, outstanding_rub=outstanding)
                return self.make_event("factoring.defaulted", request.supplier, defaulted)
            repaid = FactoringRepaid(request_id=request.request_id, amount_rub=request.invoice)
            return self.make_event("factoring.repaid", request.supplier, repaid)
        supplier = members.active.choice(rng)
        debtor = members.active.choice(rng) if rng.random() < 0.5 else self.outsider_inn(rng)
        if debtor == supplier:
            debtor = self.outsider_inn(rng)
        invoice = rub(rng, 100_000, 50_000_000)
        requested = FactoringRequested(request_id=self._new_id("factoring", "FCT"), debtor_id=debtor,
                                       invoice_amount_rub=invoice,
                                       due_date=self.clock.date() + timedelta(days=rng.randrange(30, 180)))
        self._open(self.open.factoring, FactoringRequest(requested.request_id, supplier, invoice), supplier)
        return self.make_event("factoring.requested", supplier, requested)

    def _open(self, pool: IndexedSet[EntityT], entity: EntityT, owner: str) -> None:
        pool.add(entity)
        self.members.acts(owner)
