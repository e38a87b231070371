"""The kinds of failure a sink distinguishes.

- `TransientSinkError`: the destination or the broker is unavailable for now (database down, disk
  full, directory not writable, broker unreachable). Nothing is lost: the runner pauses its
  partitions, backs off and retries the same step; offsets are not committed until it succeeds.
  Its `kind` (`database`, `disk`, `write`, `deadletter`, `commit`) is the health problem it
  reports, and its message the reason an operator reads ("disk full: ...").
- `TerminalRecordError`: one record can never be written, whatever we retry (undecodable enriched
  JSON, a value no warehouse column can hold). The runner sends it to the dead-letter topic with
  `reason` and `detail`, and the rest of the batch lands.
A row that decodes but fails the quality gate, or that the database refuses, is neither: it is
quarantined alone (`sinks.quarantine`) and can be released later.
"""

from __future__ import annotations

import errno

from kafka.errors import AuthorizationError, SaslAuthenticationFailedError

from schemas.reasons import DeadLetterReason

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
REFUSED = (AuthorizationError, SaslAuthenticationFailedError)
"""Broker errors no retry can cure (an ACL or a credential revoked while running): the sink stops
with the cause (`sinks.cli`) instead of retrying forever; its offsets stay uncommitted."""


class TransientSinkError(Exception):
    """The write may succeed later; retry the whole step after a pause."""

    def __init__(self, message: str, kind: str = "write") -> None:
        super().__init__(message)
        self.kind = kind


class TerminalRecordError(Exception):
    """One record can never be written; it goes to the dead-letter topic."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or what caused it, a few levels down) says the disk is full."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return True
        text = str(seen).lower()
        if "disk is full" in text or "no space left" in text or "could not extend file" in text:
            return True
        if getattr(seen, "sqlstate", None) == "53100":  # PostgreSQL disk_full
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def first_line(error: BaseException) -> str:
    """The first line of an error's message (database errors carry multi-line details)."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def disk_error(error: OSError, what: str) -> TransientSinkError:
    """The transient error of a failed file write: `disk full` when it is one."""
    if is_disk_full(error):
        return TransientSinkError(f"disk full: {what}: {error}", kind="disk")
    return TransientSinkError(f"{what}: {error}", kind="write")
