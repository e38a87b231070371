"""Property-based: arbitrary row values through both sinks' write paths, with the real quality gate,
on SQLite and on PostgreSQL. Each row is written or isolated (quarantined, or dead-lettered with a
reason), never a crash and never another row's loss, and SQL and Parquet decide alike, row by row.
Without the gate, the database is the last line: still no crash, refused rows quarantined.

Seeded (`derandomize`) and sized for CI: 8 gated and 25 ungated batches of up to 8 rows each.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sinks_records import BASE_TIME, company, encode, record, stamp
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from schemas.topics import Family
from sinks.batch import Batch, SourceRecord
from sinks.parquet.sink import ParquetSink
from sinks.quality.gate import GxGate
from sinks.sql.sink import SqlSink, make_engine
from sinks.sql.tables import EVENT_TABLES, quarantined_rows

TOPIC = "x.mic.orders.enriched"
TOPICS = {f"x.{family.enriched_topic}": family for family in Family}
EXAMPLES = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
GATED_EXAMPLES = settings(EXAMPLES, max_examples=8)
"""The real gate costs a GX validation per sink and example: fewer, larger examples."""

texts = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40),
    st.text(alphabet=st.sampled_from("a\x00\x01\t\n\r\x1b\x7f\x85é€😀"), max_size=10),
    st.just("x" * 501),
    st.just("y" * 5000),
)
moments = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
)
money = st.one_of(
    st.none(),
    st.decimals(min_value=Decimal("-1e15"), max_value=Decimal("9999999999999999.99"), places=2),
    st.sampled_from(["10000000000000.00", "10000000000000.01", "0.00", "-0.01"]).map(Decimal),
)


@st.composite
def order_rows(draw: st.DrawFn) -> dict[str, Any]:
    row = record(Family.ORDER, "order.placed", company(draw(st.integers(0, 5))), BASE_TIME, order_id="o")
    row["event_id"] = draw(st.one_of(st.uuids().map(str), st.just("not-a-uuid"), st.just("\x00" * 3)))
    row["occurred_at"] = stamp(draw(moments))
    for name in ("order_id", "title", "reason", "trace_id", "source", "industry", "region_code"):
        value = draw(texts)
        if value is not None or name not in ("order_id", "source"):
            row[name] = value
    row["quantity"] = draw(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)))
    deadline = draw(st.one_of(st.none(), st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))))
    row["deadline"] = None if deadline is None else deadline.isoformat()
    for name in ("budget_rub", "amount_rub"):
        value = draw(money)
        row[name] = None if value is None else format(value, "f")
    return row


def valid_row(index: int) -> dict[str, Any]:
    return record(
        Family.ORDER,
        "order.placed",
        company(index),
        BASE_TIME,
        order_id=f"valid-{uuid.uuid4().hex[:8]}",
        industry="light_industry",
        title="ok",
        quantity=1,
        budget_rub="1.00",
        deadline="2020-10-01",
    )


@pytest.fixture(scope="module")
def gate() -> GxGate:
    return GxGate()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """A factory of empty warehouses, one per example: a new SQLite file, or a PostgreSQL schema
    (created once) whose tables are emptied."""
    if request.param == "sqlite":
        template = tmp_path / "template.db"
        migrated = make_engine(f"sqlite:///{template}")
        SqlSink(migrated, TOPICS, "x.mic.deadletter").prepare()
        migrated.dispose()

        def copied() -> Engine:
            path = tmp_path / f"{uuid.uuid4().hex}.db"
            shutil.copyfile(template, path)
            return make_engine(f"sqlite:///{path}")

        yield copied
        return
    base: str = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    SqlSink(make_engine(url.render_as_string(hide_password=False)), TOPICS, "x.mic.deadletter").prepare()

    def emptied() -> Engine:
        engine = make_engine(url.render_as_string(hide_password=False))
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE order_events, orders, quarantined_rows, dead_letters"))
        return engine

    yield emptied
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def sql_outcome(engine: Engine, ids: set[str]) -> tuple[set[str], set[str]]:
    events = EVENT_TABLES[Family.ORDER]
    with engine.connect() as connection:
        landed = set(connection.execute(select(events.c.event_id)).scalars()) & ids
        kept = set(connection.execute(select(quarantined_rows.c.event_id)).scalars())
    return landed, kept


def parquet_outcome(root: Path, ids: set[str]) -> tuple[set[str], set[str]]:
    from sinks.parquet.quarantine import list_rows

    directory = root / "order_events"
    landed: set[str] = set()
    if any(directory.glob("event_date=*/*.parquet")):
        table = ds.dataset(directory, format="parquet", partitioning="hive").to_table(columns=["event_id"])
        landed = set(table.column("event_id").to_pylist()) & ids
    return landed, {row.key for row in list_rows(root)}


def batch_of(rows: list[dict[str, Any]], first: int) -> Batch:
    return Batch(
        TOPIC, 0, tuple(SourceRecord(TOPIC, 0, first + i, None, encode(r)) for i, r in enumerate(rows))
    )


@GATED_EXAMPLES
@given(st.lists(order_rows(), min_size=1, max_size=6))
def test_every_row_is_written_or_isolated_and_both_sinks_agree(
    gate: GxGate, fresh_engine: Callable[[], Engine], rows: list[dict[str, Any]]
) -> None:
    from sinks.quarantine import event_key

    rows = [valid_row(0), *rows, valid_row(1)]
    ids = {str(r["event_id"]) for r in rows}
    engine = fresh_engine()
    root = Path(tempfile.mkdtemp())
    try:
        batch = batch_of(rows, first=0)
        sql_rejected = SqlSink(engine, TOPICS, "x.mic.deadletter", gate).write(batch)
        parquet = ParquetSink(root, TOPICS, gate)
        parquet_rejected = parquet.write(batch)
        parquet.close()
        rejected = {r.record.offset for r in sql_rejected}
        assert rejected == {r.record.offset for r in parquet_rejected}
        assert all(r.detail for r in sql_rejected)
        sql_landed, sql_kept = sql_outcome(engine, ids)
        parquet_landed, parquet_kept = parquet_outcome(root, ids)
        assert sql_landed == parquet_landed
        assert sql_kept == parquet_kept
        for valid in (rows[0], rows[-1]):
            assert valid["event_id"] in sql_landed  # never another row's loss
        first_of: dict[str, int] = {}
        for offset, row in enumerate(rows):
            first_of.setdefault(str(row["event_id"]), offset)
        for event_id, offset in first_of.items():
            if offset in rejected:
                continue
            landed = event_id in sql_landed
            kept = event_key(event_id) in sql_kept
            assert landed != kept, (event_id, landed, kept)  # exactly one of written or isolated
            assert (event_key(event_id) in parquet_kept) == kept
    finally:
        engine.dispose()
        shutil.rmtree(root)


@EXAMPLES
@given(st.lists(order_rows(), min_size=1, max_size=6))
def test_without_the_gate_the_database_refusals_are_isolated_never_a_crash(
    fresh_engine: Callable[[], Engine], rows: list[dict[str, Any]]
) -> None:
    from sinks.quarantine import event_key

    rows = [valid_row(0), *rows, valid_row(1)]
    ids = {str(r["event_id"]) for r in rows}
    engine = fresh_engine()
    root = Path(tempfile.mkdtemp())
    try:
        batch = batch_of(rows, first=0)
        rejected = {r.record.offset for r in SqlSink(engine, TOPICS, "x.mic.deadletter").write(batch)}
        parquet = ParquetSink(root, TOPICS)
        assert {r.record.offset for r in parquet.write(batch)} == rejected
        parquet.close()
        landed, kept = sql_outcome(engine, ids)
        assert {rows[0]["event_id"], rows[-1]["event_id"]} <= landed
        decoded = {str(r["event_id"]) for i, r in enumerate(rows) if i not in rejected}
        assert decoded == landed | {i for i in decoded if event_key(i) in kept}
        assert parquet_outcome(root, ids)[0] == decoded  # Parquet stores every decodable value
    finally:
        engine.dispose()
        shutil.rmtree(root)
