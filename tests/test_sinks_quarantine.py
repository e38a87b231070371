"""Per-row quarantine and `mic-pipeline quarantine list|release`: exactly once across both sinks.

A gate whose verdict can be switched stands for "the cause was fixed" (a corrected rule, a
corrected contract): rows quarantined under the strict gate are released under the fixed one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from prometheus_client import REGISTRY
from sinks_records import BASE_TIME, company, encode, record
from sqlalchemy import Engine, func, select

from mic_pipeline.cli import main
from schemas.topics import Family
from sinks.batch import Batch, SourceRecord
from sinks.parquet.sink import ParquetSink
from sinks.quality.verdict import Failure, Verdict
from sinks.rows import Row
from sinks.sql.quarantine import list_quarantined
from sinks.sql.sink import SqlSink, make_engine
from sinks.sql.tables import EVENT_TABLES, STATE_TABLES, quarantined_rows

TOPIC = "x.mic.orders.enriched"
TOPICS = {f"x.{family.enriched_topic}": family for family in Family}


class SwitchableGate:
    """Refuses orders whose title starts with `suspect` while `strict`."""

    def __init__(self) -> None:
        self.strict = True

    def check(self, family: Family, rows: Sequence[Row]) -> Verdict:
        if not self.strict:
            return Verdict()
        return Verdict(
            {
                i: (Failure("Suspect", "title", "test rule", repr(row["title"])),)
                for i, row in enumerate(rows)
                if str(row.get("title")).startswith("suspect")
            }
        )


def orders(*titles: str) -> list[dict[str, Any]]:
    return [
        record(
            Family.ORDER,
            "order.placed",
            company(1),
            BASE_TIME,
            order_id=f"o{i}",
            industry="light_industry",
            title=title,
            quantity=1,
            budget_rub="10.00",
            deadline="2020-10-01",
        )
        for i, title in enumerate(titles)
    ]


def batch(rows: list[dict[str, Any]], first: int = 0, resumed: bool = False) -> Batch:
    records = tuple(SourceRecord(TOPIC, 0, first + i, None, encode(r)) for i, r in enumerate(rows))
    return Batch(TOPIC, 0, records, resumed=resumed)


def sql_ids(engine: Engine) -> list[str]:
    table = EVENT_TABLES[Family.ORDER]
    with engine.connect() as connection:
        return sorted(connection.execute(select(table.c.order_id)).scalars())


def sql_quarantined(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(quarantined_rows)).scalar_one())


def parquet_ids(root: Path) -> list[str]:
    directory = root / "order_events"
    if not any(directory.glob("event_date=*/*.parquet")):
        return []
    table = ds.dataset(directory, format="parquet", partitioning="hive").to_table(columns=["order_id"])
    return sorted(table.column("order_id").to_pylist())


def test_sql_release_lands_the_row_once_and_a_replay_never_lands_it_twice(tmp_path: Path) -> None:
    gate = SwitchableGate()
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    sink = SqlSink(engine, TOPICS, "x.mic.deadletter", gate)
    rows = orders("fine", "suspect\x1b[31m", "fine too")
    counted = REGISTRY.get_sample_value("mic_rows_quarantined_total", {"table": "order_events"}) or 0.0
    sink.write(batch(rows))
    assert sql_ids(engine) == ["o0", "o2"] and sql_quarantined(engine) == 1
    assert REGISTRY.get_sample_value("mic_rows_quarantined_total", {"table": "order_events"}) == counted + 1
    sink.write(batch(rows[1:2], first=10))  # a re-sent copy: the first decision stands
    assert sql_ids(engine) == ["o0", "o2"] and sql_quarantined(engine) == 1
    [entry] = list_quarantined(engine)
    [still] = sink.release(Family.ORDER, [entry])  # the cause is not fixed yet
    assert still.result == "still failing" and sql_quarantined(engine) == 1
    gate.strict = False  # fixed
    [done] = sink.release(Family.ORDER, [entry])
    assert done.result == "released"
    assert sql_ids(engine) == ["o0", "o1", "o2"] and sql_quarantined(engine) == 0
    with engine.connect() as connection:
        states = connection.execute(select(STATE_TABLES[Family.ORDER].c.order_id)).scalars().all()
    assert sorted(states) == ["o0", "o1", "o2"]
    gate.strict = True
    sink.write(batch(rows))  # a replay of the batch after the release: quarantines nothing again
    sink.write(batch(rows[1:2], first=10))
    assert sql_ids(engine) == ["o0", "o1", "o2"] and sql_quarantined(engine) == 0
    engine.dispose()


def test_parquet_release_lands_the_row_once_across_replays_and_restarts(tmp_path: Path) -> None:
    gate = SwitchableGate()
    sink = ParquetSink(tmp_path, TOPICS, gate)
    rows = orders("fine", "suspect\x1b[31m", "fine too")
    sink.write(batch(rows))
    assert parquet_ids(tmp_path) == ["o0", "o2"]
    gate.strict = False  # the gate is fixed, but a replay must not land the quarantined row behind
    sink.write(batch(rows, resumed=True))  # the release's back: it stays quarantined
    assert parquet_ids(tmp_path) == ["o0", "o2"]
    from sinks.parquet.quarantine import list_rows

    [entry] = list_rows(tmp_path)
    assert entry.event_id == rows[1]["event_id"] and entry.offset == 1
    assert [o.result for o in sink.release(Family.ORDER, [entry])] == ["released"]
    assert parquet_ids(tmp_path) == ["o0", "o1", "o2"] and list_rows(tmp_path) == []
    assert [o.result for o in sink.release(Family.ORDER, [entry])] == ["released"]  # idempotent
    sink.write(batch(rows, resumed=True))  # a replay after the release: the claim says released
    sink.write(batch(rows[1:2], first=10))  # a re-sent copy
    assert parquet_ids(tmp_path) == ["o0", "o1", "o2"]
    released = list((tmp_path / "order_events").rglob("released+*.parquet"))
    assert [p.name for p in released] == [f"released+{TOPIC}+0+0000000000000000001.parquet"]
    sink.close()
    reopened = ParquetSink(tmp_path, TOPICS, SwitchableGate())
    reopened.write(batch(rows, resumed=True))
    assert parquet_ids(tmp_path) == ["o0", "o1", "o2"]
    reopened.close()


def test_a_quarantine_marked_but_never_written_is_decided_again(tmp_path: Path) -> None:
    gate = SwitchableGate()
    sink = ParquetSink(tmp_path, TOPICS, gate)
    rows = orders("suspect\x1b[31m")
    sink.write(batch(rows))
    [kept] = list((tmp_path / "_quarantine").rglob("*.json"))
    kept.unlink()  # a crash between marking the claim and writing the file
    gate.strict = False
    sink.write(batch(rows, resumed=True))
    assert parquet_ids(tmp_path) == ["o0"]
    sink.close()


def test_cli_lists_escaped_and_releases_both_sinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    warehouse = tmp_path / "warehouse"
    rows = orders("fine", "suspect but valid", "suspect\x1b[31m")
    strict = SwitchableGate()
    topics = {f"{family.enriched_topic}": family for family in Family}
    engine = make_engine(url)
    sql = SqlSink(engine, topics, "mic.deadletter", strict)
    parquet = ParquetSink(warehouse, topics, strict)
    records = tuple(SourceRecord("mic.orders.enriched", 0, i, None, encode(r)) for i, r in enumerate(rows))
    sql.write(Batch("mic.orders.enriched", 0, records))
    parquet.write(Batch("mic.orders.enriched", 0, records))
    parquet.close()
    monkeypatch.setenv("MIC_DATABASE_URL", url)
    monkeypatch.setenv("MIC_WAREHOUSE_DIR", str(warehouse))
    assert main(["quarantine", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "suspect\\\\x1b[31m" in out
    assert "sql: 2 quarantined rows" in out and "parquet: 2 quarantined rows" in out
    assert main(["quarantine", "list", "--json", "--table", "order_events"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(d["sink"], d["event_id"]) for d in listed} == {
        (sink, rows[i]["event_id"]) for sink in ("sql", "parquet") for i in (1, 2)
    }
    assert main(["quarantine", "release"]) == 2  # neither --all nor --event-id
    # the real gate passes the valid row and still refuses the one with an ESC in its title
    assert main(["quarantine", "release", "--all"]) == 1
    out = capsys.readouterr().out
    assert "still failing" in out and "ExpectColumnValuesToMatchRegex(title)" in out and "\x1b" not in out
    assert "sql: 1 released, 1 still failing" in out and "parquet: 1 released, 1 still failing" in out
    assert sql_quarantined(engine) == 1 and sql_ids(engine) == ["o0", "o1"]
    assert parquet_ids(warehouse) == ["o0", "o1"]
    assert main(["quarantine", "release", "--event-id", rows[1]["event_id"]]) == 0  # nothing left to do
    assert sql_ids(engine) == ["o0", "o1"] and parquet_ids(warehouse) == ["o0", "o1"]
    engine.dispose()
