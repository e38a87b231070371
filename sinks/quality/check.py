"""`mic-pipeline check`: the quality suites over the whole SQL warehouse.

Every event table gets its row suite (the gate's, `sinks.quality.suites.row_checks`), uniqueness of
`event_id` over the whole table, plus referential checks (the company, and an order's
manufacturer, must be in `companies`); every current-state table gets a suite of its own; each
Parquet dataset (`parquet_<table>`) gets its event table's suite, referential checks against the
members in the dataset's own `member_events`, and so also a uniqueness check of `event_id` across
all its files. Results
are stored in `quality_results` (one row per expectation, one `run_id` per run) for operators, and
the GX Data Docs HTML site is built in `docs_dir` (open `index.html`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
import pyarrow.dataset as ds
from great_expectations.checkpoint.actions import UpdateDataDocsAction
from sqlalchemy import Engine, Table, insert, select

from schemas.topics import Family
from schemas.warehouse import column_names
from sinks.quality.gate import GxValidator, describe_failure, frame
from sinks.quality.suites import INN_TEXT, MONEY_TEXT, REGION_TEXT, Check, referential_columns, row_checks
from sinks.sql.migrate import upgrade
from sinks.sql.sink import make_engine
from sinks.sql.tables import EVENT_TABLES, STATE_TABLES, companies, quality_results

DOCS_SITE = "warehouse"
PARQUET_PREFIX = "parquet_"
"""Suites and results of the Parquet datasets are named `parquet_<table>`."""

_STATUSES = {
    Family.MEMBER: ["active", "left"],
    Family.ORDER: ["accepted", "cancelled", "completed", "placed"],
    Family.PATENT: ["listed", "sold", "withdrawn"],
    Family.FACTORING: ["defaulted", "funded", "repaid", "requested"],
}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one expectation on one table."""

    table: str
    expectation: str
    success: bool
    unexpected_count: int | None
    element_count: int | None
    details: str


def state_checks(family: Family) -> list[Check]:
    """The suite of `family`'s current-state table."""
    table = STATE_TABLES[family]
    key = table.primary_key.columns.values()[0].name
    status = "membership" if family is Family.MEMBER else "status"
    one_row = f"CONTRACT.md Warehouse: {table.name} holds one row per entity"
    lifecycle = "CONTRACT.md Families: the lifecycle of the family"
    checks = [
        Check("ExpectColumnValuesToNotBeNull", key, rule=one_row),
        Check("ExpectColumnValuesToBeUnique", key, rule=one_row),
        Check("ExpectColumnValuesToBeInSet", status, {"value_set": _STATUSES[family]}, lifecycle),
        Check("ExpectColumnValuesToMatchRegex", "company_id", {"regex": INN_TEXT}, "CONTRACT.md: INN"),
    ]
    if family is Family.MEMBER:
        region = "CONTRACT.md Membership: region_code"
        checks.append(Check("ExpectColumnValuesToMatchRegex", "region_code", {"regex": REGION_TEXT}, region))
    money = "CONTRACT.md Envelope: money fields >= 0, at most 2 decimals, at most 10^13"
    for column in table.columns:
        if column.name.endswith("_rub"):
            checks.append(Check("ExpectColumnValuesToMatchRegex", column.name, {"regex": MONEY_TEXT}, money))
    return checks


def event_checks(family: Family, member_ids: list[str]) -> list[Check]:
    """The row suite of an event table, uniqueness of `event_id` over the table, and referential
    checks against `member_ids`."""
    checks = list(row_checks(family))
    unique = "CONTRACT.md Warehouse: one row per event, keyed by event_id"
    checks.append(Check("ExpectColumnValuesToBeUnique", "event_id", rule=unique))
    member = "CONTRACT.md Business rules 1: the company (and an order's manufacturer) is a member"
    for column in referential_columns(family):
        checks.append(Check("ExpectColumnValuesToBeInSet", column, {"value_set": member_ids}, member))
    return checks


def warehouse_suites(member_ids: list[str], parquet_member_ids: list[str] | None) -> dict[str, list[Check]]:
    """Every table's suite. SQL referential checks use the ids in `companies`; the Parquet dataset's
    (`parquet_<table>`, when given) use the members in its own `member_events`."""
    suites: dict[str, list[Check]] = {}
    for family in Family:
        suites[family.table] = event_checks(family, member_ids)
        suites[STATE_TABLES[family].name] = state_checks(family)
        if parquet_member_ids is not None:
            suites[f"{PARQUET_PREFIX}{family.table}"] = event_checks(family, parquet_member_ids)
    return suites


def parquet_rows(root: Path, family: Family) -> list[dict[str, Any]]:
    """Every row of `family`'s Parquet dataset under `root` (empty if nothing landed yet)."""
    directory = root / family.table
    if not any(directory.glob("event_date=*/*.parquet")):
        return []
    dataset = ds.dataset(directory, format="parquet", partitioning="hive")
    rows: list[dict[str, Any]] = dataset.to_table(columns=list(column_names(family))).to_pylist()
    return rows


def _load(engine: Engine, table: Table) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(table))]


def _state_frame(rows: list[dict[str, Any]], table: Table) -> pd.DataFrame:
    data = {c.name: [row[c.name] for row in rows] for c in table.columns}
    for name in data:
        if name.endswith("_rub"):
            data[name] = [None if v is None else format(v, "f") for v in data[name]]
    return pd.DataFrame(data)


def _frames(engine: Engine, parquet: Mapping[Family, list[dict[str, Any]]] | None) -> dict[str, pd.DataFrame]:
    frames = {}
    for family in Family:
        frames[family.table] = frame(family, _load(engine, EVENT_TABLES[family]))
        state = STATE_TABLES[family]
        frames[state.name] = _state_frame(_load(engine, state), state)
        if parquet is not None:
            frames[f"{PARQUET_PREFIX}{family.table}"] = frame(family, parquet[family])
    return frames


def _with_docs(validator: GxValidator, docs_dir: Path) -> list[Any]:
    """Register a filesystem Data Docs site and one checkpoint per table that updates it."""
    validator.context.add_data_docs_site(
        site_name=DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        },
    )
    checkpoints = []
    for name in validator.checks:
        definition = validator.context.validation_definitions.add(
            gx.ValidationDefinition(
                name=name, data=validator.batch_definition(name), suite=validator.suite(name)
            )
        )
        checkpoints.append(
            validator.context.checkpoints.add(
                gx.Checkpoint(
                    name=f"check_{name}",
                    validation_definitions=[definition],
                    actions=[UpdateDataDocsAction(name="docs", site_names=[DOCS_SITE])],
                    result_format="SUMMARY",
                )
            )
        )
    return checkpoints


def check_warehouse(database_url: str, docs_dir: Path, parquet_root: Path | None = None) -> list[CheckResult]:
    """Validate every SQL table (and, with `parquet_root`, every Parquet dataset), store the results
    in `quality_results` and build Data Docs in `docs_dir`."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            member_ids = sorted(connection.execute(select(companies.c.company_id)).scalars())
        parquet = None if parquet_root is None else {f: parquet_rows(parquet_root, f) for f in Family}
        parquet_members = (
            None if parquet is None else sorted({r["company_id"] for r in parquet[Family.MEMBER]})
        )
        validator = GxValidator(warehouse_suites(member_ids, parquet_members))
        docs_dir.mkdir(parents=True, exist_ok=True)
        checkpoints = _with_docs(validator, docs_dir)
        frames = _frames(engine, parquet)
        results: list[CheckResult] = []
        for name, checkpoint in zip(validator.checks, checkpoints, strict=True):
            outcome = checkpoint.run(batch_parameters={"dataframe": frames[name]})
            [validation] = outcome.run_results.values()
            results.extend(_results(name, validator.by_check(name, validation.results)))
        _store(engine, results)
        return results
    finally:
        engine.dispose()


def _results(table: str, outcomes: list[tuple[Check, bool, dict[str, Any]]]) -> list[CheckResult]:
    return [
        CheckResult(
            table,
            check.label,
            success,
            result.get("unexpected_count"),
            result.get("element_count"),
            "" if success else describe_failure(check, result),
        )
        for check, success, result in outcomes
    ]


def _store(engine: Engine, results: list[CheckResult]) -> None:
    run_id, now = str(uuid.uuid4()), dt.datetime.now(dt.UTC)
    rows = [
        {
            "run_id": run_id,
            "table_name": r.table,
            "expectation": r.expectation,
            "success": r.success,
            "unexpected_count": r.unexpected_count,
            "element_count": r.element_count,
            "details": r.details or None,
            "checked_at": now,
        }
        for r in results
    ]
    with engine.begin() as connection:
        connection.execute(insert(quality_results), rows)
