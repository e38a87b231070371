"""The Parquet sink: exactly-once for readers through deterministic file names.

Per batch: decode, claim the `event_id`s, gate, group the rows by table and `event_date`, rotate
(row count, event-time span) and write each file as `.<name>.tmp` in its final directory, fsync it,
rename it to its deterministic name and fsync the directory. A replayed batch therefore rewrites the
same files. Because batch boundaries come from the runner, a replay after a crash may cut the records
differently; so before the first batch of a freshly assigned partition lands, every file of that
topic-partition starting at or after the batch's first offset (the group's committed position) is
deleted: those files were written by an attempt that was never committed and are about to be
written again. An `event_id` that a different record already carried (a re-sent event) is dropped
(`sinks.parquet.claims`), so readers never see an event twice. Each table directory has a lock
(`.lock`) that compaction and `quarantine release` also take.

Quarantine, per row (`sinks.quarantine.screen`): a row the gate refuses is marked `q` in its claim
(durable) and then kept as `_quarantine/<table>/<topic>+<partition>+<offset>.json`; the rest of the
batch lands. A claim marked `q` keeps its row out of the data files on every replay, and a claim
marked `r` (released, see `release`) means the row already landed in its `released+...` file, so a
replay never lands it twice. A claim marked `q` whose file was never written (a crash in between) is
decided again.

Errors: a failed file write (disk full, directory not writable) is a `TransientSinkError` (`disk
full: ...` for ENOSPC) after its temporary file was removed, so nothing half-written stays behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from mic_pipeline import metrics
from schemas.topics import Family
from sinks.batch import Batch, Rejected, SourceRecord
from sinks.errors import TerminalRecordError, TransientSinkError, disk_error
from sinks.parquet import quarantine as kept_files
from sinks.parquet.claims import QUARANTINED, RELEASED, EventIdClaims
from sinks.parquet.files import fsync_dir, write_atomically
from sinks.parquet.layout import FileName, Rotation, partition_dir, rotate, table_dir, to_table
from sinks.quality.verdict import QualityGate
from sinks.quarantine import Outcome, QuarantinedRow, Screened, log_quarantined, refailed, screen_all
from sinks.rows import DecodedBatch, Row, Rows, decode_group, decode_row, event_date

log = logging.getLogger(__name__)

QUARANTINE_DIR = kept_files.QUARANTINE_DIR
__all__ = ["QUARANTINE_DIR", "ParquetSink", "fsync_dir", "table_lock", "write_atomically"]


def _parquet_writer(table: pa.Table) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        pq.write_table(table, handle, compression="zstd")

    return write


@contextmanager
def table_lock(root: Path, table: str) -> Iterator[None]:
    """Exclusive lock of one table directory (sink writes vs compaction and releases)."""
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
        self._claims: EventIdClaims | None = None

    @classmethod
    def for_pipeline(
        cls, root: Path, topic: Callable[[str], str], gate: QualityGate | None = None
    ) -> ParquetSink:
        """The sink for the physical enriched topics named by `topic` (e.g. `Settings.topic`)."""
        return cls(root, {topic(family.enriched_topic): family for family in Family}, gate)

    @property
    def claims(self) -> EventIdClaims:
        self.prepare()
        assert self._claims is not None
        return self._claims

    def prepare(self) -> None:
        """Create the warehouse directory and open the claim index (`TransientSinkError` while the
        directory is not writable)."""
        if self._claims is not None:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._claims = EventIdClaims(self.root)
        except (OSError, sqlite3.OperationalError) as exc:
            raise _unwritable(exc) from exc

    def write(self, batch: Batch) -> list[Rejected]:
        return self.write_group([batch])[0]

    def write_group(self, batches: Sequence[Batch]) -> list[list[Rejected]]:
        """Write batches of several partitions and tables: claims per table, one gate call for all
        of them (its cost is per call), then quarantine and files per partition; the rejected
        records of each batch. The tables' locks are held throughout, taken in name order."""
        by_family: dict[Family, list[int]] = {}
        for index, batch in enumerate(batches):
            by_family.setdefault(self.families_by_topic[batch.topic], []).append(index)
        rejected: dict[int, list[Rejected]] = {}
        decoded: dict[Family, DecodedBatch] = {}
        for family, indexes in by_family.items():
            decoded[family], per_batch = decode_group(family, [batches[i] for i in indexes])
            rejected.update(zip(indexes, per_batch, strict=True))
        try:
            self.prepare()
            with contextlib.ExitStack() as locks:
                for family in sorted(by_family, key=lambda f: f.table):
                    locks.enter_context(table_lock(self.root, family.table))
                undecided = {}
                for family, indexes in by_family.items():
                    for index in indexes:
                        if batches[index].resumed:
                            self._delete_uncommitted(family, batches[index])
                    undecided[family] = self._undecided(family, decoded[family])
                screened = screen_all(self.gate, {f: (u.rows, u.sources) for f, u in undecided.items()})
                for family, passed in screened.items():
                    self._land(family, passed, undecided[family].marked)
        except (OSError, sqlite3.OperationalError) as exc:
            raise _unwritable(exc) from exc
        return [rejected[index] for index in range(len(batches))]

    def _land(self, family: Family, screened: Screened, marked: Sequence[str]) -> None:
        """Un-mark the claims decided again, quarantine the refused rows, write the others."""
        again = {entry.event_id for entry in screened.quarantined}
        unmark = [event_id for event_id in marked if event_id not in again]
        if unmark:
            self.claims.mark(family.table, unmark, None)
        self._quarantine(family, screened.quarantined)
        by_partition: dict[tuple[str, int], list[int]] = {}
        for position, source in enumerate(screened.sources):
            by_partition.setdefault((source.topic, source.partition), []).append(position)
        for positions in by_partition.values():
            rows = [screened.rows[p] for p in positions]
            self._write_files(family, rows, [screened.sources[p] for p in positions])
        metrics.ROWS_WRITTEN.labels(sink=self.name, table=family.table).inc(len(screened.rows))

    def close(self) -> None:
        if self._claims is not None:
            self._claims.close()

    def _undecided(self, family: Family, decoded: DecodedBatch) -> Undecided:
        """Claim the rows' ids: re-sent copies and rows a release already landed are skipped, rows
        whose quarantine file exists stay quarantined; the rest is for the gate to decide."""
        rows, sources = decoded.rows, decoded.sources
        claims = self.claims.claim(family.table, [row["event_id"] for row in rows], sources)
        undecided = Undecided([], [], [])
        skipped = 0
        for row, source, claim in zip(rows, sources, claims, strict=True):
            if not claim.owned or claim.status == RELEASED:
                skipped += 1  # a re-sent copy, or a row a release already landed
                continue
            if claim.status == QUARANTINED:
                if kept_files.row_file(self.root, _coordinates(family, source, row)).exists():
                    continue  # stays quarantined until released
                undecided.marked.append(str(row["event_id"]))  # marked, file never written
            undecided.rows.append(row)
            undecided.sources.append(source)
        metrics.DUPLICATES.labels(family=family.value).inc(decoded.duplicates + skipped)
        # decoded rows, as `Rows`: the gate and the files transpose them once each
        return Undecided(Rows(family, undecided.rows), undecided.sources, undecided.marked)

    def _quarantine(self, family: Family, entries: Sequence[QuarantinedRow]) -> None:
        """Mark the claims `q` (durable), then write the files: a file never exists unmarked."""
        if not entries:
            return
        self.claims.mark(family.table, [entry.event_id for entry in entries], QUARANTINED)
        for entry in entries:
            kept_files.keep(self.root, entry)
            log_quarantined(log, entry)

    def _write_files(self, family: Family, rows: Sequence[Row], sources: Sequence[SourceRecord]) -> None:
        by_date: dict[dt.date, list[int]] = {}
        for position, row in enumerate(rows):
            by_date.setdefault(event_date(row), []).append(position)
        for day, positions in sorted(by_date.items()):
            day_rows = [rows[p] for p in positions]
            for chunk in rotate(day_rows, self.rotation):
                first, last = sources[positions[chunk[0]]], sources[positions[chunk[-1]]]
                name = FileName(first.topic, first.partition, first.offset, last.offset)
                # decoded rows: as `Rows` they transpose by values (in column order), not by name
                table = to_table(family, Rows(family, (day_rows[i] for i in chunk)))
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

    def release(self, family: Family, entries: Sequence[QuarantinedRow]) -> list[Outcome]:
        """Re-check quarantined rows of `family` against the current gate; land those that pass in
        their `released+...` file (claim marked `r`, then the quarantine file removed), keep the
        others with their new failures. Idempotent: an interrupted release is completed by the next."""
        outcomes: list[Outcome] = []
        with table_lock(self.root, family.table):
            candidates: list[tuple[QuarantinedRow, Row]] = []
            for entry in entries:
                source = SourceRecord(entry.topic, entry.partition, entry.offset, None, b"")
                claim = self.claims.lookup(family.table, entry.event_id, source)
                if not claim.owned or claim.status != QUARANTINED:
                    kept_files.drop(self.root, entry)  # already landed (released, or never held)
                    outcomes.append(Outcome(entry, "released" if claim.status == RELEASED else "landed"))
                    continue
                try:
                    candidates.append((entry, decode_row(family, entry.record.encode("utf-8"))))
                except TerminalRecordError as exc:
                    outcomes.append(Outcome(entry, "still failing", exc.detail))
            verdict = self.gate.check(family, [row for _, row in candidates]) if self.gate else None
            for position, (entry, row) in enumerate(candidates):
                failures = verdict.failures_of(position) if verdict else ()
                if failures:
                    kept_files.keep(self.root, refailed(entry, failures))
                    outcomes.append(Outcome(entry, "still failing", "; ".join(f.summary for f in failures)))
                    continue
                path = partition_dir(self.root, family.table, event_date(row)) / kept_files.released_name(
                    entry
                )
                write_atomically(path, _parquet_writer(to_table(family, [row])))
                self.claims.mark(family.table, [entry.event_id], RELEASED)
                kept_files.drop(self.root, entry)
                outcomes.append(Outcome(entry, "released"))
        return outcomes


@dataclass(frozen=True)
class Undecided:
    """Rows the gate must decide, and which of them carry a `q` claim without a file."""

    rows: list[Row]
    sources: list[SourceRecord]
    marked: list[str]


def _coordinates(family: Family, source: SourceRecord, row: Row) -> QuarantinedRow:
    """A quarantine entry with just the coordinates (to find its file)."""
    now = dt.datetime.now(dt.UTC)
    return QuarantinedRow(
        family.table, source.topic, source.partition, source.offset, str(row["event_id"]), "", (), "", now
    )


def _unwritable(error: OSError | sqlite3.OperationalError) -> TransientSinkError:
    if isinstance(error, OSError):
        return disk_error(error, "warehouse directory not writable")
    return disk_error(OSError(str(error)), "warehouse index not writable")
