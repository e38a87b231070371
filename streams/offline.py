"""Offline recomputation of the live aggregates from the stream's outputs.

`offline_aggregates` takes the enriched rows (every valid event, as landed from
`mic.<family>.enriched`), the dead-letter reasons and the number of duplicates dropped, and returns
the same document as the live HTTP view (`streams.aggregates.render`). It works on the flat rows
only -- an independent derivation from the live path, which works on typed events and table state
-- so comparing the two checks the live bookkeeping across replays, rebalances and workers.

Rows may repeat (at-least-once output): they are de-duplicated by `event_id` first. Member rows
must come in their topic order per company (one company = one key = one partition, so reading the
enriched membership topic partition by partition gives that order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from streams.aggregates import (
    DUPLICATE_DELTA,
    Delta,
    add_deltas,
    delta_for_dead_letter,
    render,
)
from streams.enrich import PROFILE_KEYS
from streams.rules import MOSCOW_REGIONS

Row = Mapping[str, Any]


def _day(row: Row) -> str:
    return str(row["occurred_at"])[:10]


def _money(row: Row, name: str) -> Decimal:
    return Decimal(str(row[name]))


def _entity(row: Row, id_field: str) -> tuple[str, str]:
    return str(row["company_id"]), str(row[id_field])


def _row_deltas(
    row: Row,
    industries: Mapping[tuple[str, str], str],
    kinds: Mapping[tuple[str, str], str],
    advances: Mapping[tuple[str, str], Decimal],
) -> list[Delta]:
    kind = row["event_type"]
    day = _day(row)
    if kind.startswith("order."):
        industry = industries[_entity(row, "order_id")]
        key = f"order|{day}|{industry}"
        if kind == "order.placed":
            return [Delta(key, {"placed": 1})]
        if kind == "order.accepted":
            region = row["manufacturer_region_code"]
            outside = int(region is not None and region not in MOSCOW_REGIONS)
            return [
                Delta(key, {"accepted": 1}),
                Delta("order_totals", {"accepted": 1, "accepted_outside_moscow": outside}),
            ]
        if kind == "order.completed":
            return [
                Delta(key, {"completed": 1}, {"completed_amount_rub": _money(row, "amount_rub")}),
                Delta("order_totals", {"deals": 1}),
            ]
        return [Delta(key, {"cancelled": 1})]
    if kind == "patent.listed":
        return [
            Delta(
                f"patent|{day}|{row['kind']}", {"listed": 1}, {"listed_price_rub": _money(row, "price_rub")}
            )
        ]
    if kind == "patent.deal_closed":
        patent_kind = kinds[_entity(row, "patent_id")]
        return [
            Delta(f"patent|{day}|{patent_kind}", {"deals": 1}, {"deal_amount_rub": _money(row, "amount_rub")})
        ]
    if kind == "factoring.requested":
        return [
            Delta(
                f"factoring|{day}",
                {"requested": 1},
                {"requested_amount_rub": _money(row, "invoice_amount_rub")},
            )
        ]
    if kind == "factoring.funded":
        advance = _money(row, "advance_rub")
        return [
            Delta(f"factoring|{day}", {"funded": 1}, {"funded_amount_rub": advance}),
            Delta("factoring_outstanding", money={"outstanding_rub": advance}),
        ]
    if kind in ("factoring.repaid", "factoring.defaulted"):
        name = kind.partition(".")[2]
        amount = _money(row, "amount_rub" if name == "repaid" else "outstanding_rub")
        return [
            Delta(f"factoring|{day}", {name: 1}, {f"{name}_amount_rub": amount}),
            Delta("factoring_outstanding", money={"outstanding_rub": -advances[_entity(row, "request_id")]}),
        ]
    return []


def offline_aggregates(
    rows: Iterable[Row], dead_letter_reasons: Iterable[str], duplicates_dropped: int
) -> dict[str, Any]:
    """The aggregates document recomputed from valid rows, dead-letter reasons and the duplicate count."""
    unique: dict[str, Row] = {}
    for row in rows:
        unique.setdefault(str(row["event_id"]), row)
    industries: dict[tuple[str, str], str] = {}
    kinds: dict[tuple[str, str], str] = {}
    advances: dict[tuple[str, str], Decimal] = {}
    members: dict[str, dict[str, Any] | None] = {}
    for row in unique.values():
        kind = row["event_type"]
        if kind == "order.placed":
            industries[_entity(row, "order_id")] = str(row["industry"])
        elif kind == "patent.listed":
            kinds[_entity(row, "patent_id")] = str(row["kind"])
        elif kind == "factoring.funded":
            advances[_entity(row, "request_id")] = _money(row, "advance_rub")
        elif kind.startswith("member."):
            active = kind != "member.left"
            members[str(row["company_id"])] = {k: row[k] for k in PROFILE_KEYS} if active else None
    store: dict[str, Any] = {}
    for row in unique.values():
        add_deltas(store, _row_deltas(row, industries, kinds, advances))
    add_deltas(store, [delta_for_dead_letter(reason) for reason in dead_letter_reasons])
    add_deltas(store, [DUPLICATE_DELTA] * duplicates_dropped)
    return render([store], [profile for profile in members.values() if profile is not None])
