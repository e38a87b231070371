"""Which Kafka record first carried each `event_id`, and what became of it: duplicate suppression and
quarantine state for the Parquet sink.

Parquet files cannot reject a repeated key, so the sink keeps a small SQLite index
(`<warehouse>/_index/event_ids.db`, invisible to dataset readers) mapping every `event_id` to the
coordinates (topic, partition, offset) of the record that claimed it first, and a `status`:
- `NULL`: the claiming record's row lands in the sink's files (the usual case);
- `q`: the row was quarantined (`_quarantine/...`): it must not land until released;
- `r`: the row was released from quarantine into a `released+...` file: it has landed.
A record is a duplicate only if its id was claimed by a *different* record; a replay of the same
record finds its own claim and is written again (unless its claim says `q` or `r`), so replays after
a crash still rewrite every file they must. Claims are made before the files are written, and a
claim is never withdrawn; its status only moves `NULL -> q -> r` (and `q -> NULL` when a quarantine
was marked but its file never written, see `ParquetSink`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sinks.batch import SourceRecord

INDEX_DIR = "_index"
QUARANTINED = "q"
RELEASED = "r"
_CHUNK = 500


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming one id: whether the record owns it, and the claim's status."""

    owned: bool
    status: str | None = None


class EventIdClaims:
    """The claim index of one warehouse directory."""

    def __init__(self, root: Path) -> None:
        directory = root / INDEX_DIR
        directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            directory / "event_ids.db", timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS claims (table_name TEXT NOT NULL, event_id TEXT NOT NULL, "
            "topic TEXT NOT NULL, partition INTEGER NOT NULL, record_offset INTEGER NOT NULL, "
            "status TEXT, PRIMARY KEY (table_name, event_id)) WITHOUT ROWID"
        )
        known = {row[1] for row in self._db.execute("PRAGMA table_info(claims)")}
        if "status" not in known:  # an index written before quarantine states existed
            self._db.execute("ALTER TABLE claims ADD COLUMN status TEXT")

    def claim(self, table: str, event_ids: Sequence[str], sources: Sequence[SourceRecord]) -> list[Claim]:
        """Claim each id for its record: per id, whether the record owns it (else it is a duplicate of
        another record) and the claim's status. Durable when it returns."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?, ?, NULL)",
                [(table, i, s.topic, s.partition, s.offset) for i, s in zip(event_ids, sources, strict=True)],
            )
            owners: dict[str, tuple[str, int, int, str | None]] = {}
            for start in range(0, len(event_ids), _CHUNK):
                chunk = event_ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                query = (
                    "SELECT event_id, topic, partition, record_offset, status FROM claims "
                    f"WHERE table_name = ? AND event_id IN ({marks})"
                )
                for event_id, topic, partition, offset, status in self._db.execute(query, (table, *chunk)):
                    owners[event_id] = (topic, partition, offset, status)
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        claims = []
        for event_id, source in zip(event_ids, sources, strict=True):
            topic, partition, offset, status = owners[event_id]
            owned = (topic, partition, offset) == (source.topic, source.partition, source.offset)
            claims.append(Claim(owned, status if owned else None))
        return claims

    def lookup(self, table: str, event_id: str, source: SourceRecord) -> Claim:
        """Whether `source`'s record owns `event_id`'s claim, and the claim's status."""
        row = self._db.execute(
            "SELECT topic, partition, record_offset, status FROM claims "
            "WHERE table_name = ? AND event_id = ?",
            (table, event_id),
        ).fetchone()
        if row is None or tuple(row[:3]) != (source.topic, source.partition, source.offset):
            return Claim(False)
        return Claim(True, row[3])

    def mark(self, table: str, event_ids: Sequence[str], status: str | None) -> None:
        """Set the status of claims (durable when it returns)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "UPDATE claims SET status = ? WHERE table_name = ? AND event_id = ?",
                [(status, table, event_id) for event_id in event_ids],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite did not already (it does when a COMMIT fails
        on a full disk: an explicit ROLLBACK would then hide the real error)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()
