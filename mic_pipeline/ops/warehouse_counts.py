"""Measuring what landed, for the demo's reconciliation: distinct event ids per family in the SQL
warehouse and in the Parquet dataset, dead letters per reason, quarantined batches, and the stream's
count of dropped duplicates (its `/aggregates` view).

Read-only and by name (the sinks own the schema: `schemas.topics.Family.table`, `dead_letters`,
`quarantined_batches`). Tables that do not exist yet count as empty.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import orjson

from mic_pipeline.config import Settings
from mic_pipeline.ops.reconcile import Landed
from schemas.topics import Family


def sql_counts(database_url: str) -> tuple[dict[str, int], dict[str, int], int]:
    """Distinct event ids per family, dead letters per reason and quarantined batches in SQL."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            by_family = {
                family.value: int(
                    connection.execute(
                        text(f"SELECT COUNT(DISTINCT event_id) FROM {family.table}")
                    ).scalar_one()
                )
                for family in Family
                if family.table in tables
            }
            reasons: dict[str, int] = {}
            if "dead_letters" in tables:
                rows = connection.execute(text("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason"))
                reasons = {str(reason): int(count) for reason, count in rows}
            quarantined = 0
            if "quarantined_batches" in tables:
                quarantined = int(
                    connection.execute(text("SELECT COUNT(*) FROM quarantined_batches")).scalar_one()
                )
    finally:
        engine.dispose()
    return by_family, reasons, quarantined


def parquet_counts(warehouse_dir: Path) -> dict[str, int]:
    """Distinct event ids per family in the Parquet dataset (`<warehouse>/<table>/event_date=.../`)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    counts: dict[str, int] = {}
    for family in Family:
        root = warehouse_dir / family.table
        if not root.is_dir():
            continue
        dataset = ds.dataset(root, format="parquet", partitioning="hive")
        event_ids = dataset.to_table(columns=["event_id"]).column("event_id")
        counts[family.value] = int(pc.count_distinct(event_ids).as_py())
    return counts


def duplicates_dropped(aggregates_url: str) -> int | None:
    """`quality.duplicates_dropped` of the stream's aggregates document; None when unreachable."""
    try:
        with urllib.request.urlopen(aggregates_url, timeout=5) as response:
            document = orjson.loads(response.read())
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError):
        return None
    value = document.get("quality", {}).get("duplicates_dropped")
    return int(value) if isinstance(value, int) else None


def measure_landed(settings: Settings, aggregates_url: str) -> Landed:
    """Everything `reconcile` compares, measured now."""
    sql, reasons, quarantined = sql_counts(settings.database_url)
    return Landed(
        sql_by_family=sql,
        parquet_by_family=parquet_counts(settings.warehouse_dir),
        dead_letters_by_reason=reasons,
        duplicates_dropped=duplicates_dropped(aggregates_url),
        quarantined_batches=quarantined,
    )
