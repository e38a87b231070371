"""Per-row quarantine shared by both sinks: which rows the gate keeps out, and what is kept of each.

`screen` runs the quality gate over the decoded rows of a batch and splits them into the rows that
land and the rows quarantined *alone*, each with the expectations it failed. Because every
expectation is row-local, SQL and Parquet make the same decision for the same row.

A `QuarantinedRow` holds the record's coordinates, its `event_id`/`event_type`, the failures (the
expectation, column, contract rule and the value seen), the enriched record exactly as consumed and
when it was quarantined. The SQL sink keeps them in `quarantined_rows`, the Parquet sink as files
under `<warehouse>/_quarantine/<table>/` (`sinks.sql.quarantine`, `sinks.parquet.quarantine`);
`mic-pipeline quarantine list|release` reads and releases both (`sinks.quarantine_cli`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mic_pipeline import metrics
from schemas.topics import Family
from sinks.batch import SourceRecord
from sinks.quality.verdict import Failure, QualityGate, Verdict
from sinks.rows import Row, Rows

KEY_CHARS = 80
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}
_CONTROL.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
_CONTROL.update({code: f"\\x{code:02x}" for code in range(0x80, 0xA0)})


def escape(text: str) -> str:
    """`text` with every control character (C0, DEL, C1) written as an escape: safe on a terminal.
    Backslashes are doubled so an escape in the output is never ambiguous."""
    return text.replace("\\", "\\\\").translate(_CONTROL)


def event_key(event_id: str) -> str:
    """The quarantine key of an event id: the id itself when it is printable and at most 80 chars,
    else `sha256:<hex>` of its UTF-8 bytes (PostgreSQL text cannot hold U+0000, and a key must be
    short)."""
    if len(event_id) <= KEY_CHARS and escape(event_id) == event_id:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class QuarantinedRow:
    """One row kept out of the warehouse, with why and where it came from."""

    table: str
    topic: str
    partition: int
    offset: int
    event_id: str
    event_type: str
    failures: tuple[dict[str, str], ...]
    record: str
    quarantined_at: dt.datetime

    @property
    def key(self) -> str:
        return event_key(self.event_id)

    @property
    def reason(self) -> str:
        """The failures in one escaped line."""
        return "; ".join(escape(f"{f['expectation']}({f['column']}) = {f['value']}") for f in self.failures)

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "failures": list(self.failures),
            "record": self.record,
            "quarantined_at": self.quarantined_at.isoformat(),
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> QuarantinedRow:
        return cls(
            table=str(document["table"]),
            topic=str(document["topic"]),
            partition=int(document["partition"]),
            offset=int(document["offset"]),
            event_id=str(document["event_id"]),
            event_type=str(document["event_type"]),
            failures=tuple(dict(f) for f in document["failures"]),
            record=str(document["record"]),
            quarantined_at=dt.datetime.fromisoformat(str(document["quarantined_at"])),
        )

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.as_json())


def quarantined(
    family: Family, row: Row, source: SourceRecord, failures: Sequence[Failure], now: dt.datetime
) -> QuarantinedRow:
    """The quarantine entry of `row` (read from `source`) refused for `failures` (counted in
    `mic_rows_quarantined_total`)."""
    metrics.ROWS_QUARANTINED.labels(table=family.table).inc()
    return QuarantinedRow(
        table=family.table,
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        event_id=str(row["event_id"]),
        event_type=str(row["event_type"]),
        failures=tuple(f.as_json() for f in failures),
        record=source.value.decode("utf-8"),
        quarantined_at=now,
    )


def log_quarantined(log: logging.Logger, entry: QuarantinedRow) -> None:
    """One ERROR line for a row kept out of the warehouse (its table, event, coordinates, reason)."""
    log.error(
        "quarantined %s event %s (%s[%d]@%d): %s",
        entry.table,
        entry.key,
        entry.topic,
        entry.partition,
        entry.offset,
        entry.reason,
    )


@dataclass(frozen=True)
class Screened:
    """A batch's rows after the gate: those that land and those kept out."""

    rows: list[Row]
    sources: list[SourceRecord]
    quarantined: list[QuarantinedRow]


def screen(
    family: Family, gate: QualityGate | None, rows: Sequence[Row], sources: Sequence[SourceRecord]
) -> Screened:
    """Run `gate` over `rows`: each failing row is quarantined alone, the rest pass."""
    return screen_all(gate, {family: (rows, sources)})[family]


def screen_all(
    gate: QualityGate | None, batches: Mapping[Family, tuple[Sequence[Row], Sequence[SourceRecord]]]
) -> dict[Family, Screened]:
    """`screen` for the rows of several tables in one gate call when the gate can (`check_all`, as
    `GxGate` does: its cost is per call), else one call per table."""
    if gate is None:
        return {
            family: Screened(_kept(rows), list(sources), []) for family, (rows, sources) in batches.items()
        }
    check_all = getattr(gate, "check_all", None)
    if check_all is not None:
        verdicts: dict[Family, Verdict] = check_all({family: rows for family, (rows, _) in batches.items()})
    else:
        verdicts = {
            family: gate.check(family, rows) if rows else Verdict() for family, (rows, _) in batches.items()
        }
    now = dt.datetime.now(dt.UTC)
    return {family: _split(family, *batches[family], verdicts[family], now) for family in batches}


def _kept(rows: Sequence[Row]) -> list[Row]:
    """All of `rows` as a list: `Rows` as they are (with their columns, `sinks.rows.Rows`)."""
    return rows if isinstance(rows, Rows) else list(rows)


def _split(
    family: Family, rows: Sequence[Row], sources: Sequence[SourceRecord], verdict: Verdict, now: dt.datetime
) -> Screened:
    if verdict.passed:
        if rows:
            metrics.QUALITY_GATE.labels(table=family.table, result="passed").inc()
        return Screened(_kept(rows), list(sources), [])
    metrics.QUALITY_GATE.labels(table=family.table, result="quarantined").inc()
    passed_rows: list[Row] = []
    passed_sources, kept = [], []
    for position, (row, source) in enumerate(zip(rows, sources, strict=True)):
        failures = verdict.failures_of(position)
        if failures:
            kept.append(quarantined(family, row, source, failures, now))
        else:
            passed_rows.append(row)
            passed_sources.append(source)
    if isinstance(rows, Rows):
        passed_rows = Rows(family, passed_rows)
    return Screened(passed_rows, passed_sources, kept)


def database_refusal(error: str) -> Failure:
    """The failure recorded for a row the SQL database refused (bisected out of its batch)."""
    return Failure(
        "DatabaseRefused",
        "-",
        "SQL warehouse: the database must store the row (e.g. PostgreSQL text cannot hold U+0000)",
        escape(error.strip())[:500],
    )


@dataclass(frozen=True)
class Outcome:
    """What a release did with one quarantined row: `released` (landed now), `landed` (it had
    already landed: a leftover entry was removed) or `still failing` (kept, with `detail`)."""

    entry: QuarantinedRow
    result: str
    detail: str = ""


def refailed(entry: QuarantinedRow, failures: Sequence[Failure]) -> QuarantinedRow:
    """`entry` with the failures of a release attempt."""
    return dataclasses.replace(entry, failures=tuple(f.as_json() for f in failures))
