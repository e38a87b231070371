"""Measuring what landed, for the demo's reconciliation: distinct event ids per family in the SQL
warehouse and in the Parquet dataset, dead letters per reason, quarantined rows per family in both
(and legacy quarantined batches), and the stream's count of dropped duplicates (its `/aggregates`
view).

Read-only and by name (the sinks own the schema: `schemas.topics.Family.table`, `dead_letters`,
`quarantined_rows`, `quarantined_batches`, `<warehouse>/_quarantine/<table>/*.json`). Tables and
directories that do not exist yet count as empty.
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


def sql_quarantined(database_url: str) -> dict[str, int]:
    """Distinct events quarantined per family in SQL (`quarantined_rows`)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            if "quarantined_rows" not in set(inspect(connection).get_table_names()):
                return {}
            rows = connection.execute(
                text("SELECT table_name, COUNT(DISTINCT event_id) FROM quarantined_rows GROUP BY table_name")
            )
            tables = {str(name): int(count) for name, count in rows}
    finally:
        engine.dispose()
    return {family.value: tables[family.table] for family in Family if family.table in tables}


def parquet_quarantined(warehouse_dir: Path) -> dict[str, int]:
    """Distinct events quarantined per family in the Parquet warehouse (one file per row under
    `_quarantine/<table>/`, named `<topic>+<partition>+<offset>.json`)."""
    counts: dict[str, int] = {}
    for family in Family:
        directory = warehouse_dir / "_quarantine" / family.table
        ids = {
            orjson.loads(path.read_bytes())["event_id"]
            for path in directory.glob("*.json")
            if path.stem.count("+") == 2 and "-" not in path.stem.rsplit("+", 1)[1]
        }
        if ids:
            counts[family.value] = len(ids)
    return counts


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
        sql_quarantined_by_family=sql_quarantined(settings.database_url),
        parquet_quarantined_by_family=parquet_quarantined(settings.warehouse_dir),
    )
