"""Decide each input partition's records strictly in offset order, without holes.

Rule 2 (lifecycles) and the de-duplication markers need every partition's records in order. faust
does not guarantee it: right after a rebalance its stream can miss a record while later records of
the same partition are still delivered (which faust path drops it is not pinned down; its stream
iterator silently skips records "fetched before the rebalance" or "taken while the flow was
suspended"). Seen on the real broker (graceful stops while a backlog was processed):
`mic.membership` partition 0 offset 346 was never decided while 347 on were; in
another run a company's second `member.joined` (an injected invalid transition, offset 1206) was
applied before its first one (offset 917), which was then re-read after the next rebalance and
dead-lettered as `invalid_transition` -- a valid event lost, and its orders dead-lettered as
`unknown_company`.

`OffsetOrder` knows where the consumer was positioned for each partition (`sought`, called on
every seek) and admits only the next offset (`admit`). A record above it means records were
dropped: the worker seeks the partition back to the missing offset (`RESEEK`) and skips later
records until it arrives (seeking again every `RESEEK_RETRY_S` while it does not: records fetched
before the seek can advance faust's read position past the re-read ones, which it then drops).
Offsets the fetcher never saw as records (transaction markers, gaps that faust itself recorded)
are not holes: `admit` is told about them and lets the record through.
A record below the expected offset was already decided since the last seek: skipped.

Skipped records are released unacknowledged (`streams.seeking.release_unprocessed`), so their
offsets are never committed by this pass; they are decided when the partition reaches them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)
RESEEK_RETRY_S = 2.0
"""How long a re-read may take before the partition is sought again."""


class Admission(enum.Enum):
    """What to do with a record, given the partition's expected offset."""

    PROCESS = "process"
    SKIP = "skip"
    """Already decided since the last seek, or above a hole whose re-read is under way."""
    RESEEK = "reseek"
    """Above a hole: seek the partition back to `OffsetOrder.expected(tp)`, then skip this record."""


class OffsetOrder:
    """The next offset to decide per partition, from the last seek and the records decided since."""

    def __init__(self, *, retry_s: float = RESEEK_RETRY_S) -> None:
        self.retry_s = retry_s
        self._expected: dict[Hashable, int] = {}
        self._reseeking: dict[Hashable, tuple[int, float]] = {}
        """Partition -> (offset re-sought, when): a re-read under way."""

    def sought(self, tp: Hashable, offset: int) -> None:
        """The consumer was positioned at `offset` for `tp`: that record is decided next."""
        self._expected[tp] = offset
        self._reseeking.pop(tp, None)

    def expected(self, tp: Hashable) -> int | None:
        return self._expected.get(tp)

    def admit(
        self, tp: Hashable, offset: int, not_records: Callable[[int, int], bool], now: float
    ) -> Admission:
        """Whether to decide the record at `offset` now (`now`: a monotonic clock in seconds).

        `not_records(first, last)` says whether offsets `first..last` are known not to be records
        (transaction markers or other gaps the fetcher saw); such a jump is not a hole.
        """
        expected = self._expected.get(tp)
        if expected is None or offset == expected:
            return Admission.PROCESS
        if offset < expected:
            return Admission.SKIP
        if not_records(expected, offset - 1):
            return Admission.PROCESS
        pending = self._reseeking.get(tp)
        if pending is not None and pending[0] == expected and now - pending[1] < self.retry_s:
            return Admission.SKIP  # records fetched before the re-seek are still arriving
        self._reseeking[tp] = (expected, now)
        log.warning(
            "%s: offsets %d..%d were not processed; re-reading from %d", tp, expected, offset - 1, expected
        )
        return Admission.RESEEK

    def overdue(self, now: float) -> list[tuple[Hashable, int]]:
        """Re-reads not answered for `retry_s` (faust may have dropped the re-read records as
        older than its read position): seek them again; each is restarted as of `now`."""
        due = [(tp, offset) for tp, (offset, since) in self._reseeking.items() if now - since >= self.retry_s]
        for tp, offset in due:
            self._reseeking[tp] = (offset, now)
        return due

    def processed(self, tp: Hashable, offset: int) -> None:
        """The record at `offset` was decided: the next one is expected."""
        self._expected[tp] = offset + 1
        self._reseeking.pop(tp, None)


ORDER = OffsetOrder()
"""The worker process's order keeper (one faust app per process)."""
