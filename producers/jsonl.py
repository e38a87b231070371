"""Checking JSONL export files line by line against the contract (used by `validate` and `publish`).

A line is the bytes between line terminators (`\\n` or `\\r\\n`; the terminator is not part of the
line, and a final terminator does not start a new line). Lines are numbered from 1. Each line must
be one event of the contract; a blank line (empty or only whitespace) is reported as `malformed`,
since it is not an event and Kafka would carry it as an empty record. The check is the contract's
(schema) check only: business rules 1-2 (membership, lifecycles) need the stream's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.decode import DecodeFailure, decode_event
from schemas.events import Event
from schemas.reasons import DeadLetterReason

BLANK_LINE_DETAIL = "blank line: one JSON event per line expected"


@dataclass(frozen=True, slots=True)
class LineVerdict:
    """The outcome for one line: `event` when it is valid, else the dead-letter `reason` and `detail`."""

    line: int
    raw: bytes
    event: Event | None
    reason: DeadLetterReason | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.event is not None

    def as_json(self) -> dict[str, object]:
        """The `validate --json` object of the line."""
        reason = self.reason.value if self.reason is not None else None
        return {"line": self.line, "ok": self.ok, "reason": reason, "detail": self.detail}


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every line of `path`; `OSError` if it cannot be opened or read."""
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if line.endswith(b"\r\n"):
                yield number, line[:-2]
            elif line.endswith(b"\n"):
                yield number, line[:-1]
            else:
                yield number, line


def check_line(number: int, raw: bytes) -> LineVerdict:
    """Decode one line as a contract event."""
    if not raw.strip():
        return LineVerdict(number, raw, None, DeadLetterReason.MALFORMED, BLANK_LINE_DETAIL)
    outcome = decode_event(raw)
    if isinstance(outcome, DecodeFailure):
        return LineVerdict(number, raw, None, outcome.reason, outcome.detail)
    return LineVerdict(number, raw, outcome, None, "")


def check_file(path: Path) -> Iterator[LineVerdict]:
    """The verdict of every line of `path`, in order (streaming: memory does not grow with the file)."""
    for number, raw in read_lines(path):
        yield check_line(number, raw)
