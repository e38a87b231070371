"""The Parquet sink: exactly-once for readers through deterministic file names.

Per batch: decode, gate, group the rows by table and `event_date`, rotate (row count, event-time
span) and write each file as `.<name>.tmp` in its final directory, fsync it, rename it to its
deterministic name and fsync the directory. A replayed batch therefore rewrites the same files.
Because batch boundaries come from the runner, a replay after a crash may cut the records
differently; so before the first batch of a freshly assigned partition lands, every file of that
topic-partition starting at or after the batch's first offset (the group's committed position) is
deleted: those files were written by an attempt that was never committed and are about to be
written again. An `event_id` that a different record already carried (a re-sent event) is dropped
(`sinks.parquet.claims`), so readers never see an event twice. Each table directory has a lock
(`.lock`) that compaction also takes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from mic_pipeline import metrics
from schemas.topics import Family
from sinks.batch import Batch, Rejected, SourceRecord
from sinks.errors import TransientSinkError
from sinks.parquet.claims import EventIdClaims
from sinks.parquet.layout import FileName, Rotation, partition_dir, rotate, table_dir, to_table
from sinks.quality.verdict import QualityGate
from sinks.rows import Row, decode_batch, event_date

log = logging.getLogger(__name__)

QUARANTINE_DIR = "_quarantine"


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through a hidden temporary file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def _parquet_writer(table: pa.Table) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        pq.write_table(table, handle, compression="zstd")

    return write


@contextmanager
def table_lock(root: Path, table: str) -> Iterator[None]:
    """Exclusive lock of one table directory (sink writes vs compaction)."""
    directory = table_dir(root, table)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class ParquetSink:
    """Writes enriched topics as a Hive-partitioned Parquet dataset (`Sink` protocol)."""

    name = "parquet"

    def __init__(
        self,
        root: Path,
        families_by_topic: dict[str, Family],
        gate: QualityGate | None = None,
        rotation: Rotation | None = None,
    ) -> None:
        self.root = root
        self.families_by_topic = families_by_topic
        self.gate = gate
        self.rotation = rotation or Rotation()
        root.mkdir(parents=True, exist_ok=True)
        self.claims = EventIdClaims(root)

    @classmethod
    def for_pipeline(
        cls, root: Path, topic: Callable[[str], str], gate: QualityGate | None = None
    ) -> ParquetSink:
        """The sink for the physical enriched topics named by `topic` (e.g. `Settings.topic`)."""
        return cls(root, {topic(family.enriched_topic): family for family in Family}, gate)

    def write(self, batch: Batch) -> list[Rejected]:
        family = self.families_by_topic[batch.topic]
        decoded = decode_batch(family, batch)
        try:
            owned = self.claims.claim(
                family.table, [row["event_id"] for row in decoded.rows], decoded.sources
            )
            rows = [row for row, mine in zip(decoded.rows, owned, strict=True) if mine]
            sources = [source for source, mine in zip(decoded.sources, owned, strict=True) if mine]
            metrics.DUPLICATES.labels(family=family.value).inc(
                decoded.duplicates + len(decoded.rows) - len(rows)
            )
            with table_lock(self.root, family.table):
                if batch.resumed:
                    self._delete_uncommitted(family, batch)
                if not rows:
                    return decoded.rejected
                verdict = self.gate.check(family, rows) if self.gate else None
                if verdict is not None and not verdict.passed:
                    metrics.QUALITY_GATE.labels(table=family.table, result="quarantined").inc()
                    self._quarantine(family, batch, sources, verdict.reason)
                    return decoded.rejected
                if verdict is not None:
                    metrics.QUALITY_GATE.labels(table=family.table, result="passed").inc()
                self._write_files(family, rows, sources)
        except (OSError, sqlite3.OperationalError) as exc:
            raise TransientSinkError(f"warehouse directory not writable: {exc}") from exc
        metrics.ROWS_WRITTEN.labels(sink=self.name, table=family.table).inc(len(rows))
        return decoded.rejected

    def close(self) -> None:
        self.claims.close()

    def _write_files(self, family: Family, rows: Sequence[Row], sources: Sequence[SourceRecord]) -> None:
        by_date: dict[dt.date, list[int]] = {}
        for position, row in enumerate(rows):
            by_date.setdefault(event_date(row), []).append(position)
        for day, positions in sorted(by_date.items()):
            day_rows = [rows[p] for p in positions]
            for chunk in rotate(day_rows, self.rotation):
                first, last = sources[positions[chunk[0]]], sources[positions[chunk[-1]]]
                name = FileName(first.topic, first.partition, first.offset, last.offset)
                table = to_table(family, [day_rows[i] for i in chunk])
                path = partition_dir(self.root, family.table, day) / str(name)
                write_atomically(path, _parquet_writer(table))

    def _delete_uncommitted(self, family: Family, batch: Batch) -> None:
        for path in table_dir(self.root, family.table).glob("event_date=*/*"):
            name = FileName.parse(path.name.removeprefix(".").removesuffix(".tmp"))
            if (
                name is not None
                and name.topic == batch.topic
                and name.partition == batch.partition
                and name.first_offset >= batch.first_offset
            ):
                log.info("removing %s: written by an uncommitted attempt, about to be rewritten", path)
                path.unlink()
                fsync_dir(path.parent)

    def _quarantine(self, family: Family, batch: Batch, sources: Sequence[SourceRecord], reason: str) -> None:
        name = FileName(batch.topic, batch.partition, batch.first_offset, batch.last_offset)
        path = self.root / QUARANTINE_DIR / family.table / str(name).replace(".parquet", ".json")
        document = {
            "table": family.table,
            "topic": batch.topic,
            "partition": batch.partition,
            "first_offset": batch.first_offset,
            "last_offset": batch.last_offset,
            "reason": reason,
            "quarantined_at": dt.datetime.now(dt.UTC).isoformat(),
            "records": [source.value.decode("utf-8") for source in sources],
        }
        payload = orjson.dumps(document)
        write_atomically(path, lambda handle: handle.write(payload))
        log.error("quarantined %s: %s", path, reason)
