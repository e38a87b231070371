"""Current-state tables, recomputed per entity from the event rows.

State is a pure function of an entity's events, never of their arrival order: for every entity a
batch touched, its row is deleted and rebuilt by one aggregate query over the event table (lifecycle
timestamps from event time, attributes from the event type that carries them, status from the
lifecycle timestamps). Replays and out-of-order delivery therefore always give the same rows.
The queries are plain SQLAlchemy Core and the same on SQLite and PostgreSQL, except how the ids are
bound (`among_ids`). On PostgreSQL they are one array parameter, so a statement's text never depends
on the ids: an `IN` list of n parameters made every chunk a new statement for SQLAlchemy to render,
for psycopg to parse (too long for its cache) and for PostgreSQL to plan, 14% of the PostgreSQL
sink's CPU (py-spy, bench backlog); one parameter makes each a compiled, cached and (psycopg: after
5 executions) server-side prepared statement. SQLite keeps the `IN` list (its driver does not parse
the text, and a JSON-array subquery there measured 58% more instructions for the whole sink: its
planner scanned the event tables). Either way the statements are built and compiled once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Insert,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY

from schemas.topics import Family
from sinks.sql.tables import EVENT_TABLES, STATE_TABLES, entity_key

ID_CHUNK = 1000
"""Entities rebuilt per statement."""

Among = Callable[[ColumnElement[Any]], ColumnElement[bool]]
"""`column` is one of the ids bound as the parameter `ids`."""


def among_ids(dialect: str) -> Among:
    """The test "`column` is one of the ids" with the ids bound as the parameter `ids` (a list)."""
    if dialect == "postgresql":
        return lambda column: column == any_(bindparam("ids", type_=ARRAY(String)))
    return lambda column: column.in_(bindparam("ids", expanding=True))


def _when(table: Any, event_type: str, value: Any, condition: Any = None) -> Any:
    test = table.c.event_type == event_type
    if condition is not None:
        test = and_(test, condition)
    return case((test, value))


def _status(*ladder: tuple[ColumnElement[Any], str], default: str) -> Any:
    return case(*((stamp.is_not(None), literal(name)) for stamp, name in ladder), else_=literal(default))


def _companies(among: Among) -> Select[Any]:
    ev = EVENT_TABLES[Family.MEMBER]
    rank = func.row_number().over(
        partition_by=ev.c.company_id, order_by=(ev.c.occurred_at.desc(), ev.c.event_id.desc())
    )
    latest = select(ev, rank.label("rank")).where(among(ev.c.company_id)).subquery("latest")
    last_joined = func.max(_when(ev, "member.joined", ev.c.occurred_at))
    last_left = func.max(_when(ev, "member.left", ev.c.occurred_at))
    stamps = (
        select(
            ev.c.company_id,
            func.min(_when(ev, "member.joined", ev.c.occurred_at)).label("first_joined_at"),
            last_joined.label("last_joined_at"),
            case(
                (and_(last_left.is_not(None), (last_joined.is_(None)) | (last_left > last_joined)), last_left)
            ).label("left_at"),
            func.max(ev.c.occurred_at).label("updated_at"),
        )
        .where(among(ev.c.company_id))
        .group_by(ev.c.company_id)
        .subquery("stamps")
    )
    return (
        select(
            latest.c.company_id,
            latest.c.name,
            latest.c.kind,
            latest.c.status,
            latest.c.region_code,
            latest.c.sector,
            latest.c.size,
            latest.c.state_corporation,
            case((stamps.c.left_at.is_not(None), literal("left")), else_=literal("active")).label(
                "membership"
            ),
            stamps.c.first_joined_at,
            stamps.c.last_joined_at,
            stamps.c.left_at,
            stamps.c.updated_at,
        )
        .join_from(latest, stamps, latest.c.company_id == stamps.c.company_id)
        .where(latest.c.rank == 1)
    )


def _orders(among: Among) -> Select[Any]:
    ev = EVENT_TABLES[Family.ORDER]
    placed = "order.placed"
    at = {
        kind: func.min(_when(ev, f"order.{kind}", ev.c.occurred_at))
        for kind in ("placed", "accepted", "completed", "cancelled")
    }
    return (
        select(
            ev.c.order_id,
            func.max(ev.c.company_id).label("company_id"),
            func.max(_when(ev, placed, ev.c.industry)).label("industry"),
            func.max(_when(ev, placed, ev.c.title)).label("title"),
            func.max(_when(ev, placed, ev.c.quantity)).label("quantity"),
            func.max(_when(ev, placed, ev.c.budget_rub)).label("budget_rub"),
            func.max(_when(ev, placed, ev.c.deadline)).label("deadline"),
            func.max(_when(ev, "order.accepted", ev.c.manufacturer_id)).label("manufacturer_id"),
            func.max(_when(ev, "order.completed", ev.c.amount_rub)).label("amount_rub"),
            func.max(_when(ev, "order.cancelled", ev.c.reason)).label("cancel_reason"),
            _status(
                (at["cancelled"], "cancelled"),
                (at["completed"], "completed"),
                (at["accepted"], "accepted"),
                default="placed",
            ).label("status"),
            at["placed"].label("placed_at"),
            at["accepted"].label("accepted_at"),
            at["completed"].label("completed_at"),
            at["cancelled"].label("cancelled_at"),
            func.max(ev.c.occurred_at).label("updated_at"),
        )
        .where(among(ev.c.order_id))
        .group_by(ev.c.order_id)
    )


def _patents(among: Among) -> Select[Any]:
    ev = EVENT_TABLES[Family.PATENT]
    listed, deal = "patent.listed", "patent.deal_closed"
    is_sale = ev.c.deal == "sale"
    sold_at = func.min(_when(ev, deal, ev.c.occurred_at, is_sale))
    withdrawn_at = func.min(_when(ev, "patent.withdrawn", ev.c.occurred_at))
    return (
        select(
            ev.c.patent_id,
            func.max(ev.c.company_id).label("company_id"),
            func.max(_when(ev, listed, ev.c.kind)).label("kind"),
            func.max(_when(ev, listed, ev.c.title)).label("title"),
            func.max(_when(ev, listed, ev.c.offer)).label("offer"),
            func.max(_when(ev, listed, ev.c.price_rub)).label("price_rub"),
            _status((withdrawn_at, "withdrawn"), (sold_at, "sold"), default="listed").label("status"),
            func.count(_when(ev, deal, literal(1))).label("deal_count"),
            func.count(_when(ev, deal, literal(1), ev.c.deal == "license")).label("license_count"),
            func.sum(_when(ev, deal, ev.c.amount_rub)).label("deal_amount_rub"),
            func.max(_when(ev, deal, ev.c.buyer_id, is_sale)).label("buyer_id"),
            func.min(_when(ev, listed, ev.c.occurred_at)).label("listed_at"),
            func.max(_when(ev, deal, ev.c.occurred_at)).label("last_deal_at"),
            sold_at.label("sold_at"),
            withdrawn_at.label("withdrawn_at"),
            func.max(ev.c.occurred_at).label("updated_at"),
        )
        .where(among(ev.c.patent_id))
        .group_by(ev.c.patent_id)
    )


def _factoring(among: Among) -> Select[Any]:
    ev = EVENT_TABLES[Family.FACTORING]
    requested, funded = "factoring.requested", "factoring.funded"
    at = {
        kind: func.min(_when(ev, f"factoring.{kind}", ev.c.occurred_at))
        for kind in ("requested", "funded", "repaid", "defaulted")
    }
    return (
        select(
            ev.c.request_id,
            func.max(ev.c.company_id).label("company_id"),
            func.max(_when(ev, requested, ev.c.debtor_id)).label("debtor_id"),
            func.max(_when(ev, requested, ev.c.invoice_amount_rub)).label("invoice_amount_rub"),
            func.max(_when(ev, requested, ev.c.due_date)).label("due_date"),
            func.max(_when(ev, funded, ev.c.advance_rub)).label("advance_rub"),
            func.max(_when(ev, funded, ev.c.fee_rate)).label("fee_rate"),
            func.max(_when(ev, "factoring.repaid", ev.c.amount_rub)).label("repaid_rub"),
            func.max(_when(ev, "factoring.defaulted", ev.c.outstanding_rub)).label("outstanding_rub"),
            _status(
                (at["defaulted"], "defaulted"),
                (at["repaid"], "repaid"),
                (at["funded"], "funded"),
                default="requested",
            ).label("status"),
            at["requested"].label("requested_at"),
            at["funded"].label("funded_at"),
            at["repaid"].label("repaid_at"),
            at["defaulted"].label("defaulted_at"),
            func.max(ev.c.occurred_at).label("updated_at"),
        )
        .where(among(ev.c.request_id))
        .group_by(ev.c.request_id)
    )


_QUERIES = {
    Family.MEMBER: _companies,
    Family.ORDER: _orders,
    Family.PATENT: _patents,
    Family.FACTORING: _factoring,
}


def state_query(family: Family, among: Among) -> Select[Any]:
    """The state rows of the entities of `family` that `among` selects, from the event table."""
    return _QUERIES[family](among)


@cache
def _statements(family: Family, dialect: str) -> tuple[Delete, Insert]:
    """Delete and rebuild the state rows of the ids bound as `ids` (made and compiled once)."""
    state = STATE_TABLES[family]
    among = among_ids(dialect)
    query = state_query(family, among)
    rebuild = insert(state).from_select([c.name for c in query.selected_columns], query)
    return delete(state).where(among(state.c[entity_key(family)])), rebuild


def refresh_state(connection: Connection, family: Family, ids: Iterable[str]) -> None:
    """Rebuild the state rows of `ids` inside the caller's transaction."""
    dialect = connection.dialect.name
    remove, rebuild = _statements(family, dialect)
    unique = sorted(set(ids))
    for start in range(0, len(unique), ID_CHUNK):
        parameters = {"ids": unique[start : start + ID_CHUNK]}
        connection.execute(remove, parameters)
        connection.execute(rebuild, parameters)
