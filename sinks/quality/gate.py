"""Great Expectations 1.x execution of the suites (`sinks.quality.suites`).

Importing GX costs seconds: construct `GxGate` once per process. Each `check` builds a pandas frame
of the rows (money as its canonical text, dates and timestamps as microsecond UTC timestamps, which
hold years 1..9999, so an out-of-range value is judged by its expectation instead of breaking the
frame) and validates it with the family's suite in one pass with booleans only. Only when an
expectation failed is the frame validated again, restricted to the failed expectations, asking for
the failing row indices (`COMPLETE` result format): the cost stays per batch, not per row.
Progress bars are switched off so they never reach the logs, and GX's fingerprint of every frame is
skipped (`sinks.quality.gx_compat`).
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
from sinks.quality.gx_compat import skip_fingerprint
from sinks.quality.stacking import TIME_KINDS, Stack, StackedFrame, stacked
from sinks.quality.suites import Check, row_checks
from sinks.quality.verdict import Failure, Verdict, shown_value
from sinks.rows import Row, column_lists

_TIME = "datetime64[us, UTC]"
_FRAME_TYPES = {"date": _TIME, "timestamp": _TIME}


def _money_text(value: Any) -> str | None:
    if value is None:
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _day(value: Any) -> Any:
    return None if value is None else pd.Timestamp(value.year, value.month, value.day, tz="UTC")


def frame(family: Family, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as a pandas frame for validation: money as text, dates and timestamps as UTC
    microsecond timestamps (dates at midnight)."""
    data: dict[str, Any] = {}
    names = [column.name for column in columns(family)]
    for column, values in zip(columns(family), column_lists(names, rows), strict=True):
        if column.kind == "money":
            data[column.name] = [_money_text(v) for v in values]
        elif column.kind == "date":
            data[column.name] = pd.Series([_day(v) for v in values], dtype=_FRAME_TYPES["date"])
        elif column.kind == "timestamp":
            data[column.name] = pd.Series(values, dtype=_FRAME_TYPES["timestamp"])
        else:
            data[column.name] = list(values)
    return pd.DataFrame(data)


def describe_failure(check: Check, result: Mapping[str, Any]) -> str:
    """One line for a failed expectation over a whole table: which, how many, a few examples."""
    unexpected = result.get("unexpected_count")
    examples = result.get("partial_unexpected_list") or []
    sample = ", ".join(shown_value(v) for v in examples[:3])
    count = f"{unexpected} unexpected" if unexpected is not None else "failed"
    return f"{check.label}: {count}" + (f" (e.g. {sample})" if sample else "")


class GxValidator:
    """An ephemeral GX context with one pandas asset and one suite per table."""

    def __init__(self, suites: Mapping[str, Sequence[Check]]) -> None:
        skip_fingerprint()  # GX would hash every frame for a marker nobody reads (`gx_compat`)
        in_memory = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)  # no stray temp dirs
        self.context = gx.get_context(
            mode="ephemeral", project_config=DataContextConfig(store_backend_defaults=in_memory)
        )
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self._source = self.context.data_sources.add_pandas("warehouse")
        self.checks: dict[str, tuple[Check, ...]] = {}
        self._batches: dict[str, Any] = {}
        self._suites: dict[str, Any] = {}
        self._by_id: dict[str, dict[str, Check]] = {}
        for name, checks in suites.items():
            self.add(name, checks)

    def add(self, name: str, checks: Sequence[Check]) -> None:
        """Register the suite `name` (one pandas asset, one suite)."""
        self.checks[name] = tuple(checks)
        asset = self._source.add_dataframe_asset(name)
        self._batches[name] = asset.add_batch_definition_whole_dataframe(f"{name}_batch")
        self._suites[name] = self._suite(name, checks)

    def _suite(self, name: str, checks: Sequence[Check]) -> Any:
        suite = self.context.suites.add(gx.ExpectationSuite(name=name))
        by_id = self._by_id.setdefault(name, {})
        for check in checks:
            expectation_type = getattr(gx.expectations, check.expectation)
            added = suite.add_expectation(expectation_type(column=check.column, **check.arguments))
            by_id[str(added.id)] = check
        return suite

    def batch_definition(self, name: str) -> Any:
        """The GX batch definition (a whole pandas frame) of table `name`."""
        return self._batches[name]

    def suite(self, name: str) -> Any:
        """The GX expectation suite of table `name`."""
        return self._suites[name]

    def validate(
        self, name: str, data: pd.DataFrame, result_format: str | dict[str, Any] = "SUMMARY"
    ) -> list[tuple[Check, bool, dict[str, Any]]]:
        """Run suite `name` on `data`: `(check, success, result)` per expectation, in suite order.

        `result_format="BOOLEAN_ONLY"` is about twice as fast but gives no counts or examples.
        """
        batch = self._batches[name].get_batch(batch_parameters={"dataframe": data})
        outcome = batch.validate(self._suites[name], result_format=result_format)
        return self.by_check(name, outcome.results)

    def failing_rows(self, name: str, data: pd.DataFrame, failed: Sequence[Check]) -> dict[Check, list[int]]:
        """The row indices of `data` each of the `failed` checks of suite `name` refuses: one more
        validation, of a suite of just those checks, with the complete result format."""
        suite = gx.ExpectationSuite(name=f"{name}_failed")
        by_label = {}
        for check in failed:
            suite.add_expectation(
                getattr(gx.expectations, check.expectation)(column=check.column, **check.arguments)
            )
            by_label[check.label] = check
        batch = self._batches[name].get_batch(batch_parameters={"dataframe": data})
        outcome = batch.validate(suite, result_format={"result_format": "COMPLETE"})
        found: dict[Check, list[int]] = {}
        for item in outcome.results:
            config = item.expectation_config
            check = by_label[f"{_class_name(config.type)}({config.kwargs.get('column')})"]
            found[check] = [int(i) for i in (item.result or {}).get("unexpected_index_list") or []]
        return found

    def by_check(self, name: str, results: Sequence[Any]) -> list[tuple[Check, bool, dict[str, Any]]]:
        """GX results of suite `name` as `(check, success, result)`, in suite order."""
        found: dict[Check, tuple[bool, dict[str, Any]]] = {}
        for item in results:
            check = self._by_id[name][str(item.expectation_config.id)]
            found[check] = (bool(item.success), dict(item.result or {}))
        return [(check, *found[check]) for check in self.checks[name] if check in found]


def _class_name(snake: str) -> str:
    """`expect_column_values_to_be_unique` -> `ExpectColumnValuesToBeUnique`."""
    return "".join(part.title() for part in snake.split("_"))


class GxGate:
    """The quality gate of the sinks (`QualityGate` protocol): the row suites of the four tables, run
    as stacked frames (`sinks.quality.stacking`): one GX call per batch group, one expectation per
    distinct check, one booleans-only pass; only when something failed, one more pass of just the
    failed expectations for the failing positions."""

    def __init__(self) -> None:
        self.validator = GxValidator({})
        self._suite_of: dict[tuple[str, ...], str] = {}

    def check(self, family: Family, rows: Sequence[Row]) -> Verdict:
        """Validate the rows of one table (see `check_all`)."""
        return self.check_all({family: rows})[family]

    def check_all(self, rows_by_family: Mapping[Family, Sequence[Row]]) -> dict[Family, Verdict]:
        """Validate the rows of several tables in one call: a verdict per table."""
        present = {family: rows for family, rows in rows_by_family.items() if rows}
        if not present:
            return {family: Verdict() for family in rows_by_family}
        stacks = stacked(present)
        name = self._suite(stacks.used)
        data = _frame(stacks)
        results = self.validator.validate(name, data, "BOOLEAN_ONLY")
        failed = [check for check, ok, _ in results if not ok]
        by_row: dict[Family, dict[int, list[Failure]]] = {family: {} for family in rows_by_family}
        if failed:
            by_stack = {stack.name: stack for stack in stacks.used}
            for check, positions in self.validator.failing_rows(name, data, failed).items():
                for position in positions:
                    segment = stacks.locate(by_stack[check.column], position)
                    if segment is None:
                        raise RuntimeError(f"GX refused padding at {check.label}[{position}]")
                    row_index = position - segment.start
                    original = segment.check
                    value = present[segment.family][row_index][original.column]
                    failure = Failure(
                        original.expectation, original.column, original.rule, shown_value(value)
                    )
                    by_row[segment.family].setdefault(row_index, []).append(failure)
            if not any(by_row.values()):
                raise RuntimeError(f"GX failed {[c.label for c in failed]} but named no failing row")
        return {
            family: Verdict({i: tuple(_in_suite_order(f, family)) for i, f in sorted(failures.items())})
            for family, failures in by_row.items()
        }

    def _suite(self, used: Sequence[Stack]) -> str:
        key = tuple(stack.name for stack in used)
        if key not in self._suite_of:
            name = f"rows_{len(self._suite_of)}"
            self.validator.add(name, [stack.check for stack in used])
            self._suite_of[key] = name
        return self._suite_of[key]


def _frame(stacks: StackedFrame) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for stack in stacks.used:
        values = stacks.data[stack.name]
        data[stack.name] = pd.Series(values, dtype=_TIME) if stack.kind in TIME_KINDS else values
    return pd.DataFrame(data, copy=False)


def _in_suite_order(failures: list[Failure], family: Family) -> list[Failure]:
    order = {(c.expectation, c.column): i for i, c in enumerate(row_checks(family))}
    return sorted(failures, key=lambda f: order[(f.expectation, f.column)])
