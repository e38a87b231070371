"""Live aggregates in event time: derivation from entity states, counters, merge and rendering.

Pure code. Two sources, both replay-safe:

- business aggregates (orders, patents, factoring) are *derived* from the entity states of the
  state table: each order, patent and factoring request records the days and amounts of its
  transitions (`streams.rules`), and `entity_deltas` turns one entity into its contribution.
  A replayed record cannot count twice, because it cannot change an entity twice; a rebalance
  moves the entities with their partition. `entities_partial` sums the entities of one partition;
- quality counters (dead letters per reason, duplicates dropped) are counted once per input
  record: the key `q:<origin>` of the aggregates table is the count (`streams.tallies`), and each
  partition's partial carries their sums under the key `quality`.

Members come from the replicated member states. The HTTP view merges every partition's entries
(`merge_partials`) and `render`s the document; `streams.offline` recomputes the same document from
the stream's outputs, independently.

Definitions: days are UTC dates of `occurred_at`; an order counts as "accepted outside Moscow" when
the manufacturer's region is neither 77 nor 50; "deals closed" counts completed orders; the
factoring "outstanding now" is the sum of advances of funded requests not yet repaid or defaulted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from streams.enrich import Profile, money_text

SME_SIZES = frozenset({"small", "medium"})
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Delta:
    """An increment of one aggregate entry (key without the partition prefix)."""

    key: str
    counts: Mapping[str, int] = field(default_factory=dict)
    money: Mapping[str, Decimal] = field(default_factory=dict)


Entry = Mapping[str, Any]
"""A stored entry: `{"c": {name: int}, "m": {name: "decimal"}, "at": {topic: offset}}`."""


def entity_deltas(key: str, entity: Mapping[str, Any]) -> list[Delta]:
    """What one order, patent or factoring request contributes to the aggregates (see module doc).

    `key` is its state-table key (`o:`, `p:` or `f:` prefix); `entity` its state (`streams.rules`).
    """
    kind = key[:2]
    deltas: list[Delta] = []
    if kind == "o:":
        industry = entity["industry"]
        deltas.append(Delta(f"order|{entity['placed']}|{industry}", {"placed": 1}))
        if "accepted" in entity:
            deltas.append(Delta(f"order|{entity['accepted']}|{industry}", {"accepted": 1}))
            deltas.append(
                Delta("order_totals", {"accepted": 1, "accepted_outside_moscow": int(entity["outside"])})
            )
        if "completed" in entity:
            amount = {"completed_amount_rub": Decimal(entity["amount_rub"])}
            deltas.append(Delta(f"order|{entity['completed']}|{industry}", {"completed": 1}, amount))
            deltas.append(Delta("order_totals", {"deals": 1}))
        if "cancelled" in entity:
            deltas.append(Delta(f"order|{entity['cancelled']}|{industry}", {"cancelled": 1}))
    elif kind == "p:":
        patent_kind = entity["kind"]
        price = {"listed_price_rub": Decimal(entity["price_rub"])}
        deltas.append(Delta(f"patent|{entity['listed']}|{patent_kind}", {"listed": 1}, price))
        for day, amount in entity["deals"]:
            deltas.append(
                Delta(f"patent|{day}|{patent_kind}", {"deals": 1}, {"deal_amount_rub": Decimal(amount)})
            )
    elif kind == "f:":
        invoice = {"requested_amount_rub": Decimal(entity["invoice_rub"])}
        deltas.append(Delta(f"factoring|{entity['requested']}", {"requested": 1}, invoice))
        if "funded" in entity:
            advance = Decimal(entity["advance_rub"])
            deltas.append(
                Delta(f"factoring|{entity['funded']}", {"funded": 1}, {"funded_amount_rub": advance})
            )
            if entity["s"] == "funded":
                deltas.append(Delta("factoring_outstanding", money={"outstanding_rub": advance}))
        for end in ("repaid", "defaulted"):
            if end in entity:
                amount = {f"{end}_amount_rub": Decimal(entity[f"{end}_rub"])}
                deltas.append(Delta(f"factoring|{entity[end]}", {end: 1}, amount))
    return deltas


def entities_partial(entities: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The aggregate entries derived from entity states (counters `c`, money `m` as strings)."""
    store: dict[str, Any] = {}
    for key, entity in entities:
        for delta in entity_deltas(key, entity):
            entry = store.setdefault(delta.key, {"c": Counter(), "m": {}})
            entry["c"].update(delta.counts)
            for name, amount in delta.money.items():
                entry["m"][name] = entry["m"].get(name, Decimal(0)) + amount
    return {
        key: {"c": dict(entry["c"]), "m": {name: str(amount) for name, amount in entry["m"].items()}}
        for key, entry in store.items()
    }


class EntitySums:
    """Running sums of `entity_deltas` over the entities of one partition.

    Equal to `entities_partial` over the same entities, but kept up to date entity by entity
    (`replace` subtracts an entity's old contribution and adds its new one), so a snapshot costs
    the number of aggregate entries, not the number of entities.
    """

    def __init__(self, entities: Iterable[tuple[str, Mapping[str, Any]]] = ()) -> None:
        self._entries: dict[str, tuple[dict[str, int], dict[str, Decimal]]] = {}
        for key, entity in entities:
            self._add(key, entity, 1)

    def replace(self, key: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> None:
        """Entity `key` changed from `old` (None = new entity) to `new`."""
        if old is not None:
            self._add(key, old, -1)
        self._add(key, new, 1)

    def _add(self, key: str, entity: Mapping[str, Any], sign: int) -> None:
        entries = self._entries
        for delta in entity_deltas(key, entity):
            entry = entries.get(delta.key)
            if entry is None:
                entry = entries[delta.key] = ({}, {})
            counts, money = entry
            for name, n in delta.counts.items():
                counts[name] = counts.get(name, 0) + sign * n
            for name, amount in delta.money.items():
                money[name] = money.get(name, _ZERO) + sign * amount
            if not any(counts.values()) and not any(money.values()):
                del entries[delta.key]

    def entries(self) -> dict[str, dict[str, Any]]:
        """The entries in `entities_partial`'s format."""
        return {
            key: {"c": dict(counts), "m": {name: str(amount) for name, amount in money.items()}}
            for key, (counts, money) in self._entries.items()
        }


QUALITY = "quality"
"""Aggregate key of the dead-letter and duplicate counters."""


def delta_for_dead_letter(reason: str) -> Delta:
    """The increment of one dead letter."""
    return Delta(QUALITY, {f"dead_letters.{reason}": 1})


DUPLICATE_DELTA = Delta(QUALITY, {"duplicates_dropped": 1})


def add_deltas(store: MutableMapping[str, Any], deltas: Iterable[Delta]) -> None:
    """Add `deltas` to the entries `{"c": counts, "m": money}` of `store`, keyed by delta key."""
    for delta in deltas:
        entry = store.get(delta.key)
        counts: dict[str, int] = dict(entry["c"]) if entry else {}
        money: dict[str, str] = dict(entry["m"]) if entry else {}
        for name, n in delta.counts.items():
            counts[name] = counts.get(name, 0) + n
        for name, amount in delta.money.items():
            money[name] = str(Decimal(money.get(name, "0")) + amount)
        store[delta.key] = {"c": counts, "m": money}


def merge_partials(
    partials: Iterable[Mapping[str, Entry]],
) -> dict[str, tuple[Counter[str], dict[str, Decimal]]]:
    """Sum the entries of several partitions key by key."""
    merged: dict[str, tuple[Counter[str], dict[str, Decimal]]] = {}
    for partial in partials:
        for key, entry in partial.items():
            counts, money = merged.setdefault(key, (Counter(), {}))
            counts.update(entry["c"])
            for name, amount in entry["m"].items():
                money[name] = money.get(name, Decimal(0)) + Decimal(amount)
    return merged


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def render_members(active_profiles: Iterable[Profile]) -> dict[str, Any]:
    """Active members by region, status, sector, size (with the SME share) and state corporation."""
    by: dict[str, Counter[str]] = {name: Counter() for name in ("region_code", "status", "sector", "size")}
    corporations: Counter[str] = Counter()
    total = 0
    for profile in active_profiles:
        total += 1
        for name, counter in by.items():
            counter[str(profile.get(name))] += 1
        corporations[str(profile.get("state_corporation") or "none")] += 1
    return members_section(total, by, corporations)


def members_section(
    total: int, by: Mapping[str, Counter[str]], corporations: Counter[str]
) -> dict[str, Any]:
    """The `members` section from counts of active members per profile field."""
    sme = sum(n for size, n in by["size"].items() if size in SME_SIZES)
    return {
        "active_total": total,
        "by_region": dict(sorted(by["region_code"].items())),
        "by_status": dict(sorted(by["status"].items())),
        "by_sector": dict(sorted(by["sector"].items())),
        "by_size": dict(sorted(by["size"].items())),
        "sme_share": _share(sme, total),
        "by_state_corporation": dict(sorted(corporations.items())),
    }


_ORDER_COUNTS = ("placed", "accepted", "completed", "cancelled")
_PATENT_COUNTS = ("listed", "deals")
_FACTORING_COUNTS = ("requested", "funded", "repaid", "defaulted")


def _row(
    counts: Counter[str], money: Mapping[str, Decimal], names: Iterable[str], amounts: Iterable[str]
) -> dict[str, Any]:
    row: dict[str, Any] = {name: counts.get(name, 0) for name in names}
    row.update({name: money_text(money.get(name, Decimal(0))) for name in amounts})
    return row


def render(
    partials: Iterable[Mapping[str, Entry]],
    active_profiles: Iterable[Profile] = (),
    *,
    members: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The aggregates document served over HTTP and snapshotted to `mic.aggregates`.

    `members` is the members section when it is kept incrementally (`MemberReplica.members_section`);
    otherwise it is counted from `active_profiles`."""
    merged = merge_partials(partials)
    orders: dict[str, dict[str, Any]] = {}
    patents: dict[str, dict[str, Any]] = {}
    factoring: dict[str, Any] = {}
    empty: tuple[Counter[str], dict[str, Decimal]] = (Counter(), {})
    for key in sorted(merged):
        counts, money = merged[key]
        kind, _, rest = key.partition("|")
        if kind == "order":
            day, _, industry = rest.partition("|")
            orders.setdefault(day, {})[industry] = _row(
                counts, money, _ORDER_COUNTS, ["completed_amount_rub"]
            )
        elif kind == "patent":
            day, _, patent_kind = rest.partition("|")
            patents.setdefault(day, {})[patent_kind] = _row(
                counts, money, _PATENT_COUNTS, ["listed_price_rub", "deal_amount_rub"]
            )
        elif kind == "factoring":
            factoring[rest] = _row(
                counts, money, _FACTORING_COUNTS, [f"{n}_amount_rub" for n in _FACTORING_COUNTS]
            )
    totals, _ = merged.get("order_totals", empty)
    quality, _ = merged.get("quality", empty)
    _, outstanding = merged.get("factoring_outstanding", empty)
    dead_letters = {
        name.removeprefix("dead_letters."): n
        for name, n in sorted(quality.items())
        if name.startswith("dead_letters.")
    }
    return {
        "members": members if members is not None else render_members(active_profiles),
        "orders": {
            "per_day": orders,
            "deals_total": totals.get("deals", 0),
            "accepted_total": totals.get("accepted", 0),
            "accepted_outside_moscow": totals.get("accepted_outside_moscow", 0),
            "accepted_outside_moscow_share": _share(
                totals.get("accepted_outside_moscow", 0), totals.get("accepted", 0)
            ),
        },
        "patents": {"per_day": patents},
        "factoring": {
            "per_day": factoring,
            "outstanding_rub": money_text(outstanding.get("outstanding_rub", Decimal(0))),
        },
        "quality": {"dead_letters": dead_letters, "duplicates_dropped": quality.get("duplicates_dropped", 0)},
    }
