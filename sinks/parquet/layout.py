"""The Parquet dataset's layout, schema, file names and rotation (pure functions).

Layout: `<warehouse>/<family table>/event_date=YYYY-MM-DD/<topic>+<partition>+<first>-<last>.parquet`
where `event_date` is the UTC date of `occurred_at` and `first`/`last` are the Kafka offsets of the
file's first and last row (zero-padded, so names sort in offset order). The name is a function of the
records only, so a replay of the same records rewrites the same files. Files whose names start with
`.` or `_` (temporary files, locks, `_quarantine`) are invisible to Parquet dataset readers.

Rotation is by row count and by event-time span, never by the wall clock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa

from schemas.topics import Family
from schemas.warehouse import ColumnKind, columns
from sinks.rows import Row, column_lists

PARTITION_KEY = "event_date"
LANDED_AT = "landed_at"
"""The sink-side column after the enriched record's columns: when the sink wrote the file (UTC). Not part
of the enriched record (`schemas.warehouse`); a replay that rewrites a file writes it anew."""
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_FILE = re.compile(
    r"^(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d{19})-(?P<last>\d{19})\.parquet$"
)
_DATE_DIR = re.compile(rf"^{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_TABLES = frozenset(family.table for family in Family)

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "string": pa.string(),
    "enum": pa.dictionary(pa.int32(), pa.string()),
    "int": pa.int64(),
    "money": pa.decimal128(18, 2),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "rate": pa.float64(),
}


class UnsafePathError(ValueError):
    """A partition value or name would leave the warehouse directory or is not well-formed."""


@cache
def arrow_schema(family: Family) -> pa.Schema:
    """The Arrow schema of `family`'s files (column order of `schemas.warehouse`, then `landed_at`)."""
    fields = [pa.field(c.name, _ARROW_TYPES[c.kind], nullable=c.nullable) for c in columns(family)]
    return pa.schema([*fields, pa.field(LANDED_AT, _ARROW_TYPES["timestamp"], nullable=True)])


def to_table(family: Family, rows: Sequence[Row], landed_at: dt.datetime | None = None) -> pa.Table:
    """Rows as an Arrow table of `arrow_schema(family)` (enums dictionary-encoded), every row's
    `landed_at` = `landed_at` (default: now, UTC)."""
    schema = arrow_schema(family)
    arrays = []
    fields = list(schema)[:-1]
    for field, values in zip(fields, column_lists([f.name for f in fields], rows), strict=True):
        if pa.types.is_dictionary(field.type):
            arrays.append(pa.array(values, pa.string()).dictionary_encode())
        else:
            arrays.append(pa.array(values, field.type))
    landed = landed_at if landed_at is not None else dt.datetime.now(dt.UTC)
    arrays.append(pa.array([landed] * len(rows), schema.field(LANDED_AT).type))
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(frozen=True)
class FileName:
    """The parsed name of a data file written by the sink."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int

    def __str__(self) -> str:
        check_topic(self.topic)
        return f"{self.topic}+{self.partition}+{self.first_offset:019d}-{self.last_offset:019d}.parquet"

    @classmethod
    def parse(cls, name: str) -> FileName | None:
        """The parsed name, or None for files the sink did not name (e.g. compacted files)."""
        match = _FILE.match(name)
        if match is None:
            return None
        return cls(match["topic"], int(match["partition"]), int(match["first"]), int(match["last"]))


def check_topic(topic: str) -> str:
    """`topic` if it is a legal Kafka topic name that is safe inside a file name."""
    if not _TOPIC.match(topic) or topic in (".", ".."):
        raise UnsafePathError(f"illegal topic name {topic!r}")
    return topic


def table_dir(root: Path, table: str) -> Path:
    """`<root>/<table>` for a warehouse event table."""
    if table not in _TABLES:
        raise UnsafePathError(f"unknown table {table!r}")
    return _inside(root, root / table)


def partition_dir(root: Path, table: str, event_date: dt.date) -> Path:
    """`<root>/<table>/event_date=YYYY-MM-DD`, guaranteed to be inside `root`."""
    if not isinstance(event_date, dt.date):
        raise UnsafePathError(f"partition value {event_date!r} is not a date")
    return _inside(root, table_dir(root, table) / f"{PARTITION_KEY}={event_date.isoformat()}")


def parse_partition_dir(name: str) -> dt.date | None:
    """The date of an `event_date=YYYY-MM-DD` directory name, or None if it is not one."""
    match = _DATE_DIR.match(name)
    if match is None:
        return None
    try:
        return dt.date.fromisoformat(match[1])
    except ValueError:
        return None


def _inside(root: Path, path: Path) -> Path:
    resolved_root = root.resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(resolved_root) or resolved == resolved_root:
        raise UnsafePathError(f"{path} is outside the warehouse {root}")
    return path


@dataclass(frozen=True)
class Rotation:
    """When a file is full: `max_rows` rows or more than `max_span` of event time between its rows."""

    max_rows: int = 100_000
    max_span: dt.timedelta = dt.timedelta(hours=6)


def rotate(rows: Sequence[Row], rotation: Rotation) -> Iterator[list[int]]:
    """Split row positions (all of one partition value, in offset order) into files."""
    current: list[int] = []
    earliest = latest = None
    for position, row in enumerate(rows):
        moment: dt.datetime = row["occurred_at"]
        if current and earliest is not None and latest is not None:
            span = max(latest, moment) - min(earliest, moment)
            if len(current) >= rotation.max_rows or span > rotation.max_span:
                yield current
                current, earliest, latest = [], None, None
        current.append(position)
        earliest = moment if earliest is None else min(earliest, moment)
        latest = moment if latest is None else max(latest, moment)
    if current:
        yield current
