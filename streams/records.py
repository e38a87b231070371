"""The coordinates the stream's decisions work with: an input record and where it is processed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from schemas.topics import Family

RECHECK = "recheck"
"""`Position.topic` of a parked record re-decided on a tick of the recheck topic (`streams.parking`)."""


class SourceRecord(NamedTuple):
    """An input record: logical topic name, coordinates, key and value bytes (a named tuple: one is
    made per input record, and a frozen dataclass costs several times as much to build)."""

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


class Position(NamedTuple):
    """Where a record is processed now: its input topic, or a tick of the recheck topic (`RECHECK`)."""

    topic: str
    partition: int
    offset: int

    @property
    def text(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(slots=True)
class Outcome:
    """What to send for one record (`streams.processor`), and whether it must wait for its member."""

    enriched: list[tuple[Family, str, bytes]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes, str]] = field(default_factory=list)
    members: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    wait: bool = False
    duplicate: bool = False
    held: bool = False
    """Held until the state is durable (`streams.outbox`): not to be sent now."""

    @property
    def sends(self) -> bool:
        """Whether it has anything to send."""
        return bool(self.enriched or self.dead_letters or self.members)


REPLAY_HEADER = "mic-replayed-from"
"""Header `mic-pipeline deadletters replay` puts on a re-published dead letter
(`mic_pipeline.ops.deadletter_io.REPLAY_HEADER`): the record is a retry of a failed event."""


class _Identity(msgspec.Struct):
    event_id: Any = None
    event_type: Any = None


_identity_decoder = msgspec.json.Decoder(_Identity)


def readable_identity(value: bytes) -> tuple[str | None, str | None]:
    """`event_id` and `event_type` of a record value when readable as short strings, for dead letters."""
    try:
        found = _identity_decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None

    def short(text: Any) -> str | None:
        return text if isinstance(text, str) and len(text) <= 64 else None

    return short(found.event_id), short(found.event_type)


def is_replayed(headers: Any) -> bool:
    """Whether a record's headers (pairs or a mapping) mark a dead-letter replay."""
    if not headers:
        return False
    names = headers.keys() if isinstance(headers, Mapping) else (name for name, _ in headers)
    return REPLAY_HEADER in names
