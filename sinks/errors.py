"""The two kinds of failure a sink distinguishes.

- `TransientSinkError`: the destination or the broker is unavailable for now (database down, disk
  full, broker unreachable). Nothing is lost: the runner pauses its partitions, backs off and
  retries the same batch; offsets are not committed until it succeeds.
- `TerminalRecordError`: one record can never be written, whatever we retry (undecodable enriched
  JSON, a row the database rejects). The runner sends it to the dead-letter topic with `reason` and
  `detail`, and the rest of the batch lands.
"""

from __future__ import annotations

from schemas.reasons import DeadLetterReason


class TransientSinkError(Exception):
    """The write may succeed later; retry the whole batch after a pause."""


class TerminalRecordError(Exception):
    """One record can never be written; it goes to the dead-letter topic."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
