"""The Parquet sink's quarantine files: one JSON document per quarantined row.

`<warehouse>/_quarantine/<table>/<topic>+<partition>+<offset>.json` (offset zero-padded to 19
digits), a `sinks.quarantine.QuarantinedRow`. The `_` prefix keeps them invisible to Parquet dataset
readers. Files named `<topic>+<partition>+<first>-<last>.json` are whole batches quarantined before
per-row quarantine existed; they are listed as legacy batches and never written any more.

A row released from quarantine lands as `<table>/event_date=D/released+<topic>+<partition>+<offset>
.parquet`: a deterministic name (a repeated release rewrites the same file), which the sink's
clean-up of uncommitted attempts never matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sinks.parquet.files import remove_durably, write_atomically
from sinks.parquet.layout import check_topic, table_dir
from sinks.quarantine import QuarantinedRow

QUARANTINE_DIR = "_quarantine"
RELEASED_PREFIX = "released+"
_ROW_FILE = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<offset>\d{19})\.json$")
_BATCH_FILE = re.compile(r"^[A-Za-z0-9._-]+\+\d+\+\d{19}-\d{19}\.json$")


def quarantine_dir(root: Path, table: str) -> Path:
    """`<root>/_quarantine/<table>` (the table name is checked)."""
    table_dir(root, table)
    return root / QUARANTINE_DIR / table


def row_file(root: Path, entry: QuarantinedRow) -> Path:
    """Where `entry` is kept."""
    name = f"{check_topic(entry.topic)}+{entry.partition}+{entry.offset:019d}.json"
    return quarantine_dir(root, entry.table) / name


def released_name(entry: QuarantinedRow) -> str:
    """The data file name of a released row."""
    return f"{RELEASED_PREFIX}{check_topic(entry.topic)}+{entry.partition}+{entry.offset:019d}.parquet"


def keep(root: Path, entry: QuarantinedRow) -> None:
    """Write (or rewrite) `entry`'s file durably."""
    payload = entry.to_bytes()
    write_atomically(row_file(root, entry), lambda handle: handle.write(payload))


def drop(root: Path, entry: QuarantinedRow) -> None:
    """Remove `entry`'s file durably (after its release)."""
    remove_durably(row_file(root, entry))


def is_kept(root: Path, entry: QuarantinedRow) -> bool:
    return row_file(root, entry).exists()


@dataclass(frozen=True)
class LegacyBatch:
    """A whole batch quarantined before per-row quarantine (read-only)."""

    path: Path
    document: dict[str, Any]


def list_rows(root: Path, table: str | None = None) -> list[QuarantinedRow]:
    """Every quarantined row (of `table`), oldest first."""
    entries = []
    for path in _files(root, table):
        if _ROW_FILE.match(path.name):
            entries.append(QuarantinedRow.from_json(orjson.loads(path.read_bytes())))
    return sorted(entries, key=lambda e: (e.quarantined_at, e.table, e.topic, e.partition, e.offset))


def list_legacy_batches(root: Path, table: str | None = None) -> list[LegacyBatch]:
    """The whole batches quarantined by earlier versions of the sink."""
    return [
        LegacyBatch(path, orjson.loads(path.read_bytes()))
        for path in _files(root, table)
        if _BATCH_FILE.match(path.name)
    ]


def _files(root: Path, table: str | None) -> list[Path]:
    base = root / QUARANTINE_DIR
    if not base.is_dir():
        return []
    directories = [quarantine_dir(root, table)] if table else sorted(p for p in base.iterdir() if p.is_dir())
    return sorted(p for d in directories if d.is_dir() for p in d.glob("*.json"))
