"""Which Kafka record first carried each `event_id`: duplicate suppression for the Parquet sink.

Parquet files cannot reject a repeated key, so the sink keeps a small SQLite index
(`<warehouse>/_index/event_ids.db`, invisible to dataset readers) mapping every `event_id` to the
coordinates (topic, partition, offset) of the record that claimed it first. A record is a duplicate
only if its id was claimed by a *different* record; a replay of the same record finds its own claim
and is written again, so replays after a crash still rewrite every file they must. Claims are made
before the files are written, and a claim is never withdrawn.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from sinks.batch import SourceRecord

INDEX_DIR = "_index"
_CHUNK = 500


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
            "PRIMARY KEY (table_name, event_id)) WITHOUT ROWID"
        )

    def claim(self, table: str, event_ids: Sequence[str], sources: Sequence[SourceRecord]) -> list[bool]:
        """Claim each id for its record; True where the record owns the id (write it), False for a
        duplicate of another record. Durable when it returns."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?, ?)",
                [(table, i, s.topic, s.partition, s.offset) for i, s in zip(event_ids, sources, strict=True)],
            )
            owners: dict[str, tuple[str, int, int]] = {}
            for start in range(0, len(event_ids), _CHUNK):
                chunk = event_ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                query = (
                    "SELECT event_id, topic, partition, record_offset FROM claims "
                    f"WHERE table_name = ? AND event_id IN ({marks})"
                )
                for event_id, topic, partition, offset in self._db.execute(query, (table, *chunk)):
                    owners[event_id] = (topic, partition, offset)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return [
            owners[i] == (s.topic, s.partition, s.offset) for i, s in zip(event_ids, sources, strict=True)
        ]

    def close(self) -> None:
        self._db.close()
