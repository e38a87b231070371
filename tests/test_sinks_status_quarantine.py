"""What `status` reads about the per-row quarantine (`mic_pipeline.ops.warehouse_probe`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sinks_records import BASE_TIME, company, encode, record

from mic_pipeline.ops.warehouse_probe import read_warehouse
from schemas.topics import Family
from sinks.batch import Batch, SourceRecord
from sinks.quality.verdict import Failure, Verdict
from sinks.rows import Row
from sinks.sql.sink import SqlSink, make_engine

TOPICS = {f"x.{family.enriched_topic}": family for family in Family}


class RefuseAll:
    def check(self, family: Family, rows: list[Row]) -> Verdict:
        return Verdict(
            {i: (Failure("Refused", "title", "rule", repr(r["title"])),) for i, r in enumerate(rows)}
        )


def test_status_counts_quarantined_rows_and_escapes_their_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    rows = [
        record(
            Family.ORDER,
            "order.cancelled",
            company(1),
            BASE_TIME,
            order_id=f"o{i}",
            reason="\x1b]0;pwned\x07",
        )
        for i in range(3)
    ]
    topic = "x.mic.orders.enriched"
    batch = Batch(topic, 0, tuple(SourceRecord(topic, 0, i, None, encode(r)) for i, r in enumerate(rows)))
    SqlSink(engine, TOPICS, "x.mic.deadletter", RefuseAll()).write(batch)
    engine.dispose()
    reading = read_warehouse(url, datetime(2026, 11, 30, tzinfo=UTC))
    assert reading.quality.available and reading.quality.failures == 3
    [line] = reading.quality.details
    assert line.startswith("quarantined 3 order_events rows (mic-pipeline quarantine list)")
    assert "\x1b" not in line and "\x07" not in line
