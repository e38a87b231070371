"""`mic-pipeline quarantine list|release`: the rows the quality gate (or the database) kept out.

`list` shows every quarantined row of the SQL warehouse (`quarantined_rows`) and of the Parquet
warehouse (`_quarantine/<table>/*.json`), plus the whole batches quarantined by earlier versions
(legacy, read-only). Everything taken from event data is printed with its control characters
escaped (`sinks.quarantine.escape`); `--json` prints JSON (control characters as `\\u00XX`).

`release` re-checks the selected rows against the current gate and lands those that pass, exactly
once per sink (see `SqlSink.release`, `ParquetSink.release`); rows still failing stay quarantined
and are reported. Exit codes: 0 all selected rows released (or none selected), 1 some still failing
or a warehouse unavailable, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from mic_pipeline.config import Settings
from schemas.topics import Family
from sinks.quarantine import Outcome, QuarantinedRow, escape

SinkName = Literal["sql", "parquet"]
SINKS: tuple[SinkName, ...] = ("sql", "parquet")
TABLES = tuple(family.table for family in Family)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `quarantine list` and `quarantine release`."""
    quarantine = subparsers.add_parser("quarantine", help="list or release rows the quality gate kept out")
    actions = quarantine.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list quarantined rows (both sinks)")
    _common(listing)
    listing.add_argument("--json", action="store_true", help="one JSON document instead of text lines")
    listing.set_defaults(handler=_list)
    release = actions.add_parser("release", help="re-check quarantined rows and land those that pass")
    _common(release)
    release.add_argument("--event-id", action="append", default=[], help="release this event (repeatable)")
    release.add_argument("--all", action="store_true", help="release every selected row")
    release.set_defaults(handler=_release)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", choices=TABLES, default=None, help="only this event table")
    parser.add_argument(
        "--sink", choices=(*SINKS, "both"), default="both", help="which warehouse (default both)"
    )


@dataclass(frozen=True)
class Listing:
    """What one sink holds in quarantine."""

    sink: SinkName
    rows: list[QuarantinedRow]
    legacy: list[dict[str, Any]]


def _chosen(args: argparse.Namespace) -> tuple[SinkName, ...]:
    return SINKS if args.sink == "both" else (args.sink,)


def _read(settings: Settings, sink: SinkName, table: str | None) -> Listing:
    if sink == "sql":
        from sinks.sql.migrate import upgrade
        from sinks.sql.quarantine import list_legacy_batches, list_quarantined
        from sinks.sql.sink import make_engine

        engine = make_engine(settings.database_url)
        try:
            upgrade(engine)
            return Listing(sink, list_quarantined(engine, table), list_legacy_batches(engine, table))
        finally:
            engine.dispose()
    from sinks.parquet import quarantine as files

    legacy = [
        {**batch.document, "records": len(batch.document.get("records", [])), "file": str(batch.path)}
        for batch in files.list_legacy_batches(settings.warehouse_dir, table)
    ]
    return Listing(sink, files.list_rows(settings.warehouse_dir, table), legacy)


def _each_sink(args: argparse.Namespace, work: Callable[[Settings, SinkName], int]) -> int:
    """Run `work` per chosen sink; a warehouse that cannot be read is one error line, exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from sinks.errors import TransientSinkError

    settings = Settings.from_env()
    status = 0
    for sink in _chosen(args):
        try:
            status = max(status, work(settings, sink))
        except (SQLAlchemyError, OSError, TransientSinkError) as exc:
            print(
                f"{sink}: warehouse unavailable: {escape(str(exc).strip().splitlines()[0])}", file=sys.stderr
            )
            status = 1
    return status


def _list(args: argparse.Namespace) -> int:
    documents: list[dict[str, Any]] = []

    def show(settings: Settings, sink: SinkName) -> int:
        listing = _read(settings, sink, args.table)
        if args.json:
            documents.extend({"sink": sink, **row.as_json()} for row in listing.rows)
            documents.extend({"sink": sink, "legacy_batch": _plain(batch)} for batch in listing.legacy)
            return 0
        for row in listing.rows:
            print(_line(sink, row))
        for batch in listing.legacy:
            print(_legacy_line(sink, batch))
        print(f"{sink}: {len(listing.rows)} quarantined rows, {len(listing.legacy)} legacy batches")
        return 0

    status = _each_sink(args, show)
    if args.json:
        print(json.dumps(documents, indent=2, ensure_ascii=True))
    return status


def _plain(batch: dict[str, Any]) -> dict[str, Any]:
    return {key: value if isinstance(value, int | str | None) else str(value) for key, value in batch.items()}


def _line(sink: SinkName, row: QuarantinedRow) -> str:
    when = row.quarantined_at.isoformat(timespec="seconds")
    return (
        f"{sink:<8}{row.table:<17}{escape(row.event_id):<37}{escape(row.event_type):<22}"
        f"{row.topic}[{row.partition}]@{row.offset}  {when}  {row.reason}"
    )


def _legacy_line(sink: SinkName, batch: dict[str, Any]) -> str:
    table = batch.get("table_name") or batch.get("table")
    offsets = f"{batch.get('first_offset')}-{batch.get('last_offset')}"
    return (
        f"{sink:<8}{table!s:<17}legacy batch {batch.get('topic')}[{batch.get('partition')}]@{offsets}: "
        f"{escape(str(batch.get('reason')))}"
    )


def _selected(rows: Iterable[QuarantinedRow], event_ids: list[str]) -> list[QuarantinedRow]:
    wanted = set(event_ids)
    return [row for row in rows if not wanted or row.event_id in wanted]


def _release(args: argparse.Namespace) -> int:
    if not args.all and not args.event_id:
        print(
            "quarantine release: name rows with --event-id ID (repeatable) or release --all", file=sys.stderr
        )
        return 2
    from sinks.app import build_gate

    gate = build_gate()

    def release(settings: Settings, sink: SinkName) -> int:
        rows = _selected(_read(settings, sink, args.table).rows, args.event_id)
        outcomes: list[Outcome] = []
        destination = _destination(settings, sink, gate)
        try:
            for family in Family:
                mine = [row for row in rows if row.table == family.table]
                if mine:
                    outcomes.extend(destination.release(family, mine))
        finally:
            destination.close()
        for outcome in outcomes:
            detail = f": {escape(outcome.detail)}" if outcome.detail else ""
            print(
                f"{sink:<8}{outcome.entry.table:<17}{escape(outcome.entry.event_id):<37}{outcome.result}{detail}"
            )
        failing = sum(1 for o in outcomes if o.result == "still failing")
        print(f"{sink}: {len(outcomes) - failing} released, {failing} still failing")
        return 1 if failing else 0

    return _each_sink(args, release)


def _destination(settings: Settings, sink: SinkName, gate: Any) -> Any:
    if sink == "sql":
        from sinks.sql.sink import SqlSink

        return SqlSink.for_pipeline(settings.database_url, settings.topic, gate)
    from sinks.parquet.sink import ParquetSink

    return ParquetSink.for_pipeline(settings.warehouse_dir, settings.topic, gate)
