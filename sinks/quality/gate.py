"""Great Expectations 1.x execution of the suites (`sinks.quality.suites`).

Importing GX costs seconds: construct `GxGate` once per process. Each `check` builds a pandas frame
of the batch (money as its canonical text, timestamps as UTC datetimes) and validates it with the
family's suite; progress bars are switched off so they never reach the logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from schemas.topics import Family
from schemas.warehouse import columns
from sinks.quality.suites import Check, batch_checks
from sinks.quality.verdict import Verdict
from sinks.rows import Row


def _money_text(value: Any) -> str | None:
    if value is None:
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def frame(family: Family, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as a pandas frame for validation: money as text, dates and timestamps as datetimes."""
    data: dict[str, list[Any]] = {}
    for column in columns(family):
        values = [row[column.name] for row in rows]
        if column.kind == "money":
            values = [
                None if v is None else format(v, "f") if isinstance(v, Decimal) else str(v) for v in values
            ]
        data[column.name] = values
    result = pd.DataFrame(data)
    for column in columns(family):
        if column.kind in ("date", "timestamp"):
            result[column.name] = pd.to_datetime(result[column.name], utc=True)
    return result


def describe_failure(check: Check, result: Mapping[str, Any]) -> str:
    """One line for a failed expectation: which, how many, a few examples."""
    unexpected = result.get("unexpected_count")
    examples = result.get("partial_unexpected_list") or []
    sample = ", ".join(repr(v) for v in examples[:3])
    count = f"{unexpected} unexpected" if unexpected is not None else "failed"
    return f"{check.label}: {count}" + (f" (e.g. {sample})" if sample else "")


class GxValidator:
    """An ephemeral GX context with one pandas asset and one suite per table."""

    def __init__(self, suites: Mapping[str, Sequence[Check]]) -> None:
        in_memory = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)  # no stray temp dirs
        self.context = gx.get_context(
            mode="ephemeral", project_config=DataContextConfig(store_backend_defaults=in_memory)
        )
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = self.context.data_sources.add_pandas("warehouse")
        self.checks = {name: tuple(checks) for name, checks in suites.items()}
        self._batches: dict[str, Any] = {}
        self._suites: dict[str, Any] = {}
        for name, checks in self.checks.items():
            asset = source.add_dataframe_asset(name)
            self._batches[name] = asset.add_batch_definition_whole_dataframe(f"{name}_batch")
            suite = self.context.suites.add(gx.ExpectationSuite(name=name))
            for check in checks:
                expectation_type = getattr(gx.expectations, check.expectation)
                suite.add_expectation(expectation_type(column=check.column, **check.arguments))
            self._suites[name] = suite

    def batch_definition(self, name: str) -> Any:
        """The GX batch definition (a whole pandas frame) of table `name`."""
        return self._batches[name]

    def suite(self, name: str) -> Any:
        """The GX expectation suite of table `name`."""
        return self._suites[name]

    def validate(
        self, name: str, data: pd.DataFrame, result_format: str = "SUMMARY"
    ) -> list[tuple[Check, bool, dict[str, Any]]]:
        """Run suite `name` on `data`: `(check, success, result)` per expectation, in suite order.

        `result_format="BOOLEAN_ONLY"` is about twice as fast but gives no counts or examples.
        """
        batch = self._batches[name].get_batch(batch_parameters={"dataframe": data})
        outcome = batch.validate(self._suites[name], result_format=result_format)
        by_label: dict[str, tuple[bool, dict[str, Any]]] = {}
        for item in outcome.results:
            config = item.expectation_config
            label = f"{type_name(config.type)}({config.kwargs.get('column')})"
            by_label[label] = (bool(item.success), dict(item.result or {}))
        return [(check, *by_label[check.label]) for check in self.checks[name]]


def type_name(snake: str) -> str:
    """`expect_column_values_to_be_unique` -> `ExpectColumnValuesToBeUnique`."""
    return "".join(part.title() for part in snake.split("_"))


class GxGate:
    """The quality gate of the sinks (`QualityGate` protocol): the batch suite of each table."""

    def __init__(self) -> None:
        self.validator = GxValidator({family.table: batch_checks(family) for family in Family})

    def check(self, family: Family, rows: Sequence[Row]) -> Verdict:
        """Validate quickly (booleans only); only a failing batch is validated again for details."""
        data = frame(family, rows)
        results = self.validator.validate(family.table, data, "BOOLEAN_ONLY")
        if all(ok for _, ok, _ in results):
            return Verdict()
        results = self.validator.validate(family.table, data)
        return Verdict(tuple(describe_failure(c, r) for c, ok, r in results if not ok))
