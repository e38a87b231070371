"""Ground truth of a simulated run: what each produced record is, and what the pipeline must do with it.

One JSON object per line, in production order. Tests reconcile the stream's output against it:
dead letters by `event_id` and `expected` reason, or by `value_sha256` when the record has no readable
event id (malformed records); `valid` records must reach the enriched topics once; `duplicate` records
re-send an earlier valid record's exact bytes and must be dropped and counted (contract rule 3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import msgspec

VALID = "valid"
DUPLICATE = "duplicate"


class GroundTruthRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One produced Kafka record.

    `topic` is the logical topic name (no prefix); `key` the record key as text (`None` = no key);
    `event_id` / `event_type` as a reader of the value can see them (`None` when unreadable);
    `expected` is `"valid"`, `"duplicate"` or a dead-letter reason of the contract; `variant`
    names the kind of defect (e.g. `"bad_inn"`), `None` for valid records and duplicates;
    `value_sha256` is the hex SHA-256 of the exact value bytes sent.
    """

    seq: int
    topic: str
    key: str | None
    event_id: str | None
    event_type: str | None
    expected: str
    value_sha256: str
    variant: str | None = None


def sha256_hex(value: bytes) -> str:
    """The `value_sha256` of a record value."""
    return hashlib.sha256(value).hexdigest()


class GroundTruthWriter:
    """Appends records to a JSONL file; a context manager that closes (and flushes) the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] = path.open("wb")
        self._encoder = msgspec.json.Encoder()
        self.count = 0

    def write(self, record: GroundTruthRecord) -> None:
        self._file.write(self._encoder.encode(record) + b"\n")
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> GroundTruthWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_ground_truth(path: Path) -> Iterator[GroundTruthRecord]:
    """The records of a ground-truth file, in order; raises `msgspec.ValidationError` on a bad line."""
    decoder = msgspec.json.Decoder(GroundTruthRecord)
    with path.open("rb") as file:
        for line in file:
            if line.strip():
                yield decoder.decode(line)
