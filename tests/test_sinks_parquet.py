"""Parquet sink without Kafka: layout, path safety, naming, rotation, replays, quarantine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from sinks_records import BASE_TIME, company, encode, record, scenario

from schemas.topics import Family
from sinks.batch import Batch, SourceRecord
from sinks.parquet.layout import (
    FileName,
    Rotation,
    UnsafePathError,
    arrow_schema,
    check_topic,
    parse_partition_dir,
    partition_dir,
    rotate,
    table_dir,
)
from sinks.parquet.sink import ParquetSink
from sinks.quality.verdict import Failure, Verdict
from sinks.rows import Row

TOPIC = "x.mic.orders.enriched"
TOPICS = {f"x.{family.enriched_topic}": family for family in Family}


def order_batch(rows: list[dict[str, Any]], first_offset: int = 0, resumed: bool = False) -> Batch:
    records = tuple(SourceRecord(TOPIC, 0, first_offset + i, None, encode(row)) for i, row in enumerate(rows))
    return Batch(TOPIC, 0, records, resumed=resumed)


def orders(n: int, step: dt.timedelta = dt.timedelta(minutes=30)) -> list[dict[str, Any]]:
    return [
        record(
            Family.ORDER,
            "order.completed",
            company(i % 5),
            BASE_TIME + i * step,
            order_id=f"o{i}",
            amount_rub=f"{i}.25",
        )
        for i in range(n)
    ]


def read(root: Path, table: str = "order_events") -> pa.Table:
    return ds.dataset(root / table, format="parquet", partitioning="hive").to_table()


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))


def test_partition_values_and_names_cannot_escape_the_warehouse(tmp_path: Path) -> None:
    root = tmp_path / "w"
    root.mkdir()
    assert (
        partition_dir(root, "order_events", dt.date(2020, 9, 1))
        == root / "order_events/event_date=2020-09-01"
    )
    for bad_table in ("../etc", "order_events/../../x", "unknown", ""):
        with pytest.raises(UnsafePathError):
            table_dir(root, bad_table)
    with pytest.raises(UnsafePathError):
        partition_dir(root, "order_events", "2020-09-01/../../x")  # type: ignore[arg-type]
    for bad_topic in ("a/b", "..", ".", "a b", "a+b", ""):
        with pytest.raises(UnsafePathError):
            check_topic(bad_topic)
    (tmp_path / "outside").mkdir()
    (root / "member_events").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePathError):
        table_dir(root, "member_events")
    assert parse_partition_dir("event_date=2020-02-30") is None
    assert parse_partition_dir("event_date=2020-02-29") == dt.date(2020, 2, 29)


def test_file_names_are_deterministic_and_parse_back() -> None:
    name = FileName("p.mic.orders.enriched", 3, 120, 4999)
    assert str(name) == "p.mic.orders.enriched+3+0000000000000000120-0000000000000004999.parquet"
    assert FileName.parse(str(name)) == name
    assert FileName.parse("compacted+abc.parquet") is None


def test_rotation_by_row_count_and_event_time_span_not_arrival() -> None:
    hour = dt.timedelta(hours=1)
    rows: list[Row] = [{"occurred_at": BASE_TIME + h * hour} for h in (0, 1, 2, 3, 4, 5)]
    assert list(rotate(rows, Rotation(max_rows=4, max_span=10 * hour))) == [[0, 1, 2, 3], [4, 5]]
    assert list(rotate(rows, Rotation(max_rows=100, max_span=2 * hour))) == [[0, 1, 2], [3, 4, 5]]
    late: list[Row] = [{"occurred_at": BASE_TIME + h * hour} for h in (5, 0, 6)]  # out of order
    assert list(rotate(late, Rotation(max_rows=100, max_span=5 * hour))) == [[0, 1], [2]]


def test_rows_land_typed_and_partitioned_by_utc_event_date(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, TOPICS)
    rows = orders(60)  # 30 hours from 2020-09-01 09:00 UTC: two days
    assert sink.write(order_batch(rows)) == []
    table = read(tmp_path)
    assert sorted(table.column("event_id").to_pylist()) == sorted(r["event_id"] for r in rows)
    assert set(table.column("event_date").to_pylist()) == {"2020-09-01", "2020-09-02"}
    written = ds.dataset(tmp_path / "order_events", format="parquet").schema
    assert written.field("amount_rub").type == pa.decimal128(18, 2)
    assert written.field("occurred_at").type == pa.timestamp("us", tz="UTC")
    assert pa.types.is_dictionary(written.field("event_type").type)
    assert written.remove_metadata() == arrow_schema(Family.ORDER)
    assert {str(v) for v in table.column("amount_rub").to_pylist()} == {f"{i}.25" for i in range(60)}


def test_replay_rewrites_the_same_files(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, TOPICS)
    rows = orders(40)
    sink.write(order_batch(rows))
    before = files(tmp_path)
    sink.write(order_batch(rows))
    assert files(tmp_path) == before
    assert read(tmp_path).num_rows == 40


def test_resumed_partition_drops_files_of_an_uncommitted_attempt(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, TOPICS)
    rows = orders(40)
    sink.write(order_batch(rows[:10]))  # committed: offsets 0..9
    sink.write(order_batch(rows[10:25], first_offset=10))  # written, crash before commit
    (tmp_path / "order_events/event_date=2020-09-01/.stale.parquet.tmp").write_bytes(b"partial")
    sink.write(order_batch(rows[10:40], first_offset=10, resumed=True))  # replay, other boundaries
    table = read(tmp_path)
    assert table.num_rows == 40
    assert len(set(table.column("event_id").to_pylist())) == 40


def test_undecodable_records_are_rejected(tmp_path: Path) -> None:
    rows = orders(3)
    records = (
        SourceRecord(TOPIC, 0, 0, None, encode(rows[0])),
        SourceRecord(TOPIC, 0, 1, None, b"[1, 2]"),
        SourceRecord(TOPIC, 0, 2, None, encode(rows[1])),
    )
    rejected = ParquetSink(tmp_path, TOPICS).write(Batch(TOPIC, 0, records))
    assert [r.record.offset for r in rejected] == [1]
    assert read(tmp_path).num_rows == 2


class RefuseOdd:
    """Refuses the rows with an odd amount (`<i>.25`, i odd)."""

    def check(self, family: Family, rows: Sequence[Row]) -> Verdict:
        return Verdict(
            {
                i: (Failure("Refused", "amount_rub", "test rule", str(row["amount_rub"])),)
                for i, row in enumerate(rows)
                if int(row["amount_rub"]) % 2
            }
        )


def test_a_refused_row_is_quarantined_alone_and_invisible_to_readers(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, TOPICS, gate=RefuseOdd())
    sink.write(order_batch(orders(5)))
    assert sorted(str(v) for v in read(tmp_path).column("amount_rub").to_pylist()) == ["0.25", "2.25", "4.25"]
    kept = sorted(p.name for p in (tmp_path / "_quarantine/order_events").glob("*.json"))
    assert kept == [
        "x.mic.orders.enriched+0+0000000000000000001.json",
        "x.mic.orders.enriched+0+0000000000000000003.json",
    ]
    assert b'"expectation":"Refused"' in (tmp_path / "_quarantine/order_events" / kept[0]).read_bytes()


def test_all_families_land(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, TOPICS)
    events = scenario(10)
    for family in Family:
        topic = f"x.{family.enriched_topic}"
        mine = [row for f, row in events if f is family]
        records = tuple(SourceRecord(topic, 1, i, None, encode(row)) for i, row in enumerate(mine))
        assert sink.write(Batch(topic, 1, records)) == []
        assert read(tmp_path, family.table).num_rows == len(mine)


def dataset_rows(root: Path) -> list[tuple[Any, ...]]:
    table = read(root)
    return sorted(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))


def test_compaction_merges_committed_files_of_closed_days_and_readers_see_the_same_rows(
    tmp_path: Path,
) -> None:
    from sinks.parquet.compact import compact_table

    sink = ParquetSink(tmp_path, TOPICS)
    rows = orders(60)  # 2020-09-01 and 2020-09-02
    for start in range(0, 60, 5):
        sink.write(order_batch(rows[start : start + 5], first_offset=start))
    before_rows, before_files = dataset_rows(tmp_path), files(tmp_path)
    committed = {(TOPIC, 0): 50}  # offsets 50..59 not committed yet: must stay as they are
    report = compact_table(tmp_path, "order_events", dt.date(2020, 9, 3), committed)
    assert report == [
        "order_events/event_date=2020-09-01: 6 files -> 1",
        "order_events/event_date=2020-09-02: 4 files -> 1",
    ]
    after_files = files(tmp_path)
    assert dataset_rows(tmp_path) == before_rows
    assert len(after_files) == 4
    assert sum("+0000000000000000050-" in f or "+0000000000000000055-" in f for f in after_files) == 2
    assert not list(tmp_path.glob("order_events/.*compacting"))
    # idempotent, and open days (here: before 2020-09-02) are left alone
    assert compact_table(tmp_path, "order_events", dt.date(2020, 9, 3), committed) == []
    assert compact_table(tmp_path, "order_events", dt.date(2020, 9, 2), {(TOPIC, 0): 60}) == []
    assert before_files != after_files


def test_an_event_re_sent_at_another_offset_lands_once_but_replays_still_rewrite(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, TOPICS)
    rows = orders(10)
    sink.write(order_batch(rows))
    sink.write(order_batch(rows[:4], first_offset=10))  # the producer re-sent four events
    assert read(tmp_path).num_rows == 10
    sink.write(order_batch(rows, resumed=True))  # a replay of the first batch after a crash
    table = read(tmp_path)
    assert table.num_rows == 10 and len(set(table.column("event_id").to_pylist())) == 10
    sink.close()
    reopened = ParquetSink(tmp_path, TOPICS)  # claims are durable
    reopened.write(order_batch(rows[4:6], first_offset=20))
    assert read(tmp_path).num_rows == 10


def test_files_are_written_from_decoded_rows_transposed_by_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate's and the files' transposes take the decoded rows as `Rows` (`sinks.rows`)."""
    import sinks.parquet.sink as parquet_sink
    from sinks.rows import Rows

    seen: list[type] = []
    real_to_table = parquet_sink.to_table

    def to_table(family: Family, rows: Sequence[Row]) -> pa.Table:
        seen.append(type(rows))
        return real_to_table(family, rows)

    monkeypatch.setattr(parquet_sink, "to_table", to_table)
    rows = orders(60)
    assert ParquetSink(tmp_path, TOPICS).write(order_batch(rows)) == []
    assert seen and all(kind is Rows for kind in seen)
    assert sorted(read(tmp_path).column("event_id").to_pylist()) == sorted(r["event_id"] for r in rows)
