"""SQL sink without Kafka: batches built directly, on SQLite and (marked postgres) PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sinks_records import BASE_TIME, company, encode, record, scenario
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from schemas.reasons import DeadLetterReason
from schemas.topics import Family
from sinks.batch import Batch, SourceRecord
from sinks.quality.verdict import Failure, Verdict
from sinks.rows import Row
from sinks.sql.sink import SqlSink, make_engine
from sinks.sql.tables import EVENT_TABLES, STATE_TABLES, dead_letters, metadata, quarantined_rows

TOPICS = {f"x.{family.enriched_topic}": family for family in Family}
TOPIC_OF = {family: topic for topic, family in TOPICS.items()}
DL_TOPIC = "x.mic.deadletter"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        created = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
        yield created
        created.dispose()
        return
    base_url: str = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, pool_pre_ping=True)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    created = make_engine(url.render_as_string(hide_password=False))
    yield created
    created.dispose()
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def make_sink(engine: Engine, gate: Any = None) -> SqlSink:
    return SqlSink(engine, TOPICS, DL_TOPIC, gate)


def batches(events: list[tuple[Family, dict[str, Any]]], size: int = 50) -> list[Batch]:
    """Batches per family topic (partition 0), offsets in list order."""
    per_topic: dict[str, list[SourceRecord]] = {}
    for family, row in events:
        topic = TOPIC_OF[family]
        records = per_topic.setdefault(topic, [])
        records.append(SourceRecord(topic, 0, len(records), row["company_id"].encode(), encode(row)))
    result = []
    for topic, records in per_topic.items():
        for start in range(0, len(records), size):
            result.append(Batch(topic, 0, tuple(records[start : start + size])))
    return result


def table_rows(engine: Engine, family: Family) -> list[dict[str, Any]]:
    table = STATE_TABLES[family]
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(table).order_by(*table.primary_key))]


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_migrations_create_exactly_the_tables_of_the_metadata(engine: Engine) -> None:
    make_sink(engine).prepare()
    make_sink(engine).prepare()  # a second start is a no-op upgrade
    with engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diffs == []


def test_events_land_once_and_replays_add_nothing(engine: Engine) -> None:
    sink = make_sink(engine)
    events = scenario(20)
    for batch in batches(events):
        assert sink.write(batch) == []
    for batch in batches(events, size=7):  # replay with other batch boundaries
        assert sink.write(batch) == []
    for family in Family:
        expected = sum(1 for f, _ in events if f is family)
        assert count(engine, EVENT_TABLES[family]) == expected


def test_state_is_the_same_whatever_the_delivery_order(engine: Engine, tmp_path: Path) -> None:
    events = scenario(15)
    in_order = make_sink(engine)
    for batch in batches(events):
        in_order.write(batch)
    expected = {family: table_rows(engine, family) for family in Family}

    shuffled_engine = make_engine(f"sqlite:///{tmp_path / 'shuffled.db'}")
    shuffled = make_sink(shuffled_engine)
    mixed = list(events)
    random.Random(7).shuffle(mixed)
    for batch in batches(mixed, size=4) + batches(mixed[:30], size=3):
        shuffled.write(batch)
    for family in Family:
        assert table_rows(shuffled_engine, family) == expected[family], family
    shuffled_engine.dispose()

    orders = {row["order_id"]: row for row in expected[Family.ORDER]}
    assert orders["o-0"]["status"] == "completed"
    assert orders["o-0"]["amount_rub"] == Decimal("1000.50")
    assert orders["o-1"]["status"] == "accepted"
    assert orders["o-1"]["placed_at"] == BASE_TIME + dt.timedelta(minutes=1, hours=1)
    requests = {row["request_id"]: row for row in expected[Family.FACTORING]}
    assert requests["f-0"]["status"] == "defaulted"
    assert requests["f-1"]["status"] == "funded"
    patents = {row["patent_id"]: row for row in expected[Family.PATENT]}
    assert patents["p-0"]["license_count"] == 1 and patents["p-0"]["status"] == "listed"


def test_member_that_left_and_rejoined_is_active_with_latest_profile(engine: Engine) -> None:
    inn = company(1)
    hour = dt.timedelta(hours=1)
    joined = record(
        Family.MEMBER,
        "member.joined",
        inn,
        BASE_TIME,
        name="A",
        kind="company",
        region_code="77",
        sector="it",
        size="small",
        status="participant",
    )
    left = record(
        Family.MEMBER,
        "member.left",
        inn,
        BASE_TIME + hour,
        name="A",
        kind="company",
        region_code="77",
        sector="it",
        size="small",
        status="participant",
    )
    rejoined = record(
        Family.MEMBER,
        "member.joined",
        inn,
        BASE_TIME + 2 * hour,
        name="A2",
        kind="company",
        region_code="50",
        sector="it",
        size="medium",
        status="regional_partner",
    )
    sink = make_sink(engine)
    sink.write(batches([(Family.MEMBER, rejoined)])[0])
    sink.write(batches([(Family.MEMBER, left), (Family.MEMBER, joined)])[0])
    [row] = table_rows(engine, Family.MEMBER)
    assert (row["membership"], row["name"], row["region_code"], row["left_at"]) == (
        "active",
        "A2",
        "50",
        None,
    )
    assert row["first_joined_at"] == BASE_TIME
    sink.write(batches([(Family.MEMBER, joined), (Family.MEMBER, left)])[0])
    with engine.connect() as connection:
        view = connection.execute(text("SELECT region_code, status, members FROM members_by_region_status"))
        assert [tuple(r) for r in view] == [("50", "regional_partner", 1)]


def test_money_is_exact_at_the_contract_limits(engine: Engine) -> None:
    amounts = ["9999999999999.99", "0.01", "0.10", "1234567890123.45", "10000000000000.00"]
    events = [
        (
            Family.ORDER,
            record(
                Family.ORDER, "order.completed", company(1), BASE_TIME, order_id=f"o{i}", amount_rub=amount
            ),
        )
        for i, amount in enumerate(amounts)
    ]
    make_sink(engine).write(batches(events)[0])
    with engine.connect() as connection:
        table = EVENT_TABLES[Family.ORDER]
        landed = connection.execute(select(table.c.amount_rub).order_by(table.c.order_id)).scalars().all()
        stamps = connection.execute(select(table.c.occurred_at)).scalars().all()
    assert [str(a) for a in landed] == amounts
    assert {s.utcoffset() for s in stamps} == {dt.timedelta(0)}


def test_undecodable_records_are_rejected_and_the_rest_lands(engine: Engine) -> None:
    good = record(Family.ORDER, "order.cancelled", company(2), BASE_TIME, order_id="o1")
    extra = dict(good, event_id=str(uuid.uuid4()), surprise=1)
    bad_scale = dict(good, event_id=str(uuid.uuid4()), event_type="order.completed", amount_rub="1.5")
    topic = TOPIC_OF[Family.ORDER]
    values = [encode(good), b"{not json", encode(extra), encode(bad_scale), encode(good)]
    batch = Batch(topic, 0, tuple(SourceRecord(topic, 0, i, None, v) for i, v in enumerate(values)))
    rejected = make_sink(engine).write(batch)
    assert [(r.record.offset, r.reason) for r in rejected] == [
        (1, DeadLetterReason.MALFORMED),
        (2, DeadLetterReason.SCHEMA_VIOLATION),
        (3, DeadLetterReason.SCHEMA_VIOLATION),
    ]
    assert rejected[1].event_id == extra["event_id"] and "enriched record" in rejected[1].detail
    assert count(engine, EVENT_TABLES[Family.ORDER]) == 1
    assert table_rows(engine, Family.ORDER)[0]["status"] == "cancelled"


def test_dead_letters_land_once_keyed_by_their_origin(engine: Engine) -> None:
    letter = {
        "reason": "invalid_transition",
        "detail": "completed before accepted",
        "original_topic": "mic.orders",
        "original_partition": 2,
        "original_offset": 41,
        "original_key": "7700000001",
        "original_value": "{}",
        "event_id": str(uuid.uuid4()),
        "event_type": "order.completed",
        "failed_at": "2020-09-01T10:00:00Z",
    }
    values = [orjson.dumps(letter), orjson.dumps(letter), b"\xff\xfe garbage"]
    batch = Batch(DL_TOPIC, 0, tuple(SourceRecord(DL_TOPIC, 0, i, None, v) for i, v in enumerate(values)))
    sink = make_sink(engine)
    assert sink.write(batch) == []
    assert sink.write(batch) == []
    with engine.connect() as connection:
        rows = connection.execute(select(dead_letters).order_by(dead_letters.c.original_topic)).all()
    assert [(r.original_topic, r.original_offset, r.reason) for r in rows] == [
        ("mic.orders", 41, "invalid_transition"),
        (DL_TOPIC, 2, "malformed"),
    ]
    assert rows[1].original_encoding == "base64"


class RefuseOrders:
    """Refuses every row whose `order_id` starts with `bad`."""

    def check(self, family: Family, rows: Sequence[Row]) -> Verdict:
        refused = {
            i: (Failure("Refused", "order_id", "test rule", repr(row.get("order_id"))),)
            for i, row in enumerate(rows)
            if str(row.get("order_id") or "").startswith("bad")
        }
        return Verdict(refused)


def test_a_row_the_gate_refuses_is_quarantined_alone_and_the_rest_lands(engine: Engine) -> None:
    rows = [
        record(Family.ORDER, "order.cancelled", company(1), BASE_TIME, order_id=order_id)
        for order_id in ("o1", "bad1", "o2")
    ]
    [batch] = batches([(Family.ORDER, row) for row in rows])
    sink = make_sink(engine, RefuseOrders())
    assert sink.write(batch) == []
    assert sink.write(batch) == []  # a replay adds nothing
    assert count(engine, EVENT_TABLES[Family.ORDER]) == 2
    with engine.connect() as connection:
        [kept] = connection.execute(select(quarantined_rows)).all()
    assert (kept.event_id, kept.record_offset, kept.table_name) == (rows[1]["event_id"], 1, "order_events")
    assert orjson.loads(kept.failures)[0]["expectation"] == "Refused"
    assert orjson.loads(kept.record)["order_id"] == "bad1"
    assert {r["order_id"] for r in table_rows(engine, Family.ORDER)} == {"o1", "o2"}


def test_reporting_views_answer_from_the_state_tables(engine: Engine) -> None:
    sink = make_sink(engine)
    for batch in batches(scenario(12)):
        sink.write(batch)
    with engine.connect() as connection:

        def rows(query: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in connection.execute(text(query))]

        assert rows("SELECT region_code, status, members FROM members_by_region_status") == [
            ("77", "participant", 12)
        ]
        assert rows("SELECT industry, month, deals, amount_rub FROM oem_deals_per_industry_month") == [
            ("metal_processing", "2020-09", 6, Decimal("6003.00"))
        ]
        assert rows("SELECT kind, deal, deals, amount_rub FROM patent_deals_per_kind") == [
            ("invention", "license", 12, Decimal("1200.00"))
        ]
        [factoring] = rows(
            "SELECT month, requests, funded, defaulted, default_rate FROM factoring_volume_monthly"
        )
    assert factoring[:4] == ("2020-09", 12, 12, 4)
    assert float(factoring[4]) == 1.0  # every settled request so far defaulted (none repaid)


def test_sinks_starting_together_migrate_once(engine: Engine) -> None:
    import subprocess
    import sys

    url = engine.url.render_as_string(hide_password=False)
    script = "import sys; from sinks.sql.migrate import upgrade; from sinks.sql.sink import make_engine; "
    script += "upgrade(make_engine(sys.argv[1]))"
    processes = [
        subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE) for _ in range(3)
    ]
    failures = [p.stderr.read().decode() for p in processes if p.wait(60) != 0 and p.stderr is not None]
    assert failures == []
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0004"


def test_the_fast_sqlite_insert_stores_exactly_what_sqlalchemy_would(tmp_path: Path) -> None:
    import sqlite3

    from sinks.sql.sink import _insert_ignoring_conflicts, insert_events

    events = scenario(6)
    paths = []
    for name, insert in (
        ("core", lambda c, f, rows: _insert_ignoring_conflicts(c, EVENT_TABLES[f], rows)),
        ("fast", insert_events),
    ):
        path = tmp_path / f"{name}.db"
        engine = make_engine(f"sqlite:///{path}")
        make_sink(engine).prepare()
        from sinks.rows import decode_row

        with engine.begin() as connection:
            for family in Family:
                rows = [decode_row(family, encode(r)) for f, r in events if f is family]
                insert(connection, family, rows)
        engine.dispose()
        paths.append(path)
    for family in Family:
        dumps = []
        names = ", ".join(c.name for c in EVENT_TABLES[family].columns if c.name != "landed_at")
        for path in paths:
            with sqlite3.connect(path) as db:
                dumps.append(db.execute(f"SELECT {names} FROM {family.table} ORDER BY event_id").fetchall())
        assert dumps[0] == dumps[1] and dumps[0], family
        with sqlite3.connect(paths[1]) as db:  # the sink's insert also stamps landed_at (UTC text)
            stamps = db.execute(f"SELECT DISTINCT landed_at IS NOT NULL FROM {family.table}").fetchall()
        assert stamps == [(1,)], family


def test_state_rebuilt_many_entities_per_statement_is_the_state_rebuilt_one_by_one(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entities' ids are bound as one parameter (`sinks.sql.state.among_ids`), in chunks."""
    from sinks.sql import state

    events = scenario(15)
    reference_engine = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    reference = make_sink(reference_engine)
    for batch in batches(events, size=1):
        reference.write(batch)
    monkeypatch.setattr(state, "ID_CHUNK", 4)
    chunked = make_sink(engine)
    for batch in batches(events, size=len(events)):
        chunked.write(batch)
    for family in Family:
        rows = table_rows(engine, family)
        assert len(rows) > 4, family  # several chunks
        assert rows == table_rows(reference_engine, family), family
    reference_engine.dispose()


def test_postgresql_binds_the_state_ids_as_one_array_whatever_their_number() -> None:
    """The statement's text never depends on the ids, so psycopg can cache and prepare it."""
    from sqlalchemy.dialects import postgresql, sqlite

    from sinks.sql.state import _statements

    for family in Family:
        for statement in _statements(family, "postgresql"):
            compiled = statement.compile(dialect=postgresql.dialect())
            unbound = {name for name, value in compiled.params.items() if value is None}
            assert unbound == {"ids"}, family  # the rest are the statement's own constants
            assert "= ANY (%(ids)s::VARCHAR[])" in str(compiled), family
            assert " IN (" not in str(compiled), family
        for statement in _statements(family, "sqlite"):
            compiled = statement.compile(dialect=sqlite.dialect())
            unbound = {name for name, value in compiled.params.items() if value is None}
            assert unbound == {"ids"} and "IN (__[POSTCOMPILE_ids])" in str(compiled), family
