"""The coordinates the stream's decisions work with: an input record and where it is processed."""

from __future__ import annotations

from dataclasses import dataclass

RECHECK = "recheck"
"""`Position.topic` of a parked record re-decided on a tick of the recheck topic (`streams.parking`)."""


@dataclass(frozen=True)
class SourceRecord:
    """An input record: logical topic name, coordinates, key and value bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    replayed: bool = False
    """Re-published from a dead letter (`streams.processor.REPLAY_HEADER`): may be decided again."""

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class Position:
    """Where a record is processed now: its input topic, or a tick of the recheck topic (`RECHECK`)."""

    topic: str
    partition: int
    offset: int

    @property
    def text(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"
