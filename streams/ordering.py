"""Decide each input partition's records strictly in offset order, without holes.

Rule 2 (lifecycles) and the de-duplication markers need every partition's records in order and
none skipped. The worker receives fetched batches per partition (`streams.faust_compat`) and knows
where the consumer was positioned for each partition (`sought`: faust's seek to the committed
offsets after a rebalance, with never-committed partitions rewound to their start, and the
worker's own re-seeks). `OffsetOrder.admit` then says, per batch, which of its records to decide:

- the batch starts at the expected offset: all of it;
- it starts below: the records below the expected offset were taken since the last seek (a
  fetch that was under way when the consumer was sought back): skipped;
- it starts above: records between were not delivered -- seek back to the expected offset and
  drop the batch (`Admission.RESEEK`). If the first fetch after that seek starts at the same offset
  again, the offsets in between are not records at all (transaction markers, records removed by
  compaction or by retention before anyone read them): the batch is decided, with a warning.

Offsets inside one fetched batch may jump for the same reasons; a batch is what the fetcher read
contiguously, so those jumps are never holes. (Before batch delivery, faust's own stream dropped
the first records after a seek in almost every partition; that path is no longer used. See the
history of `streams/README.md`.)
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Hashable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class Admission(enum.Enum):
    """What to do with a fetched batch of one partition."""

    DECIDE = "decide"
    """Decide the batch's records from `Admitted.start` on."""
    RESEEK = "reseek"
    """Records before the batch are missing: seek the partition back to `Admitted.seek_to`."""


@dataclass(frozen=True)
class Admitted:
    admission: Admission
    start: int = 0
    """Index of the first record of the batch to decide."""
    seek_to: int | None = None


class OffsetOrder:
    """The next offset to decide per partition, from the last seek and the records decided since."""

    def __init__(self) -> None:
        self._expected: dict[Hashable, int] = {}
        self._reseeking: dict[Hashable, tuple[int, int]] = {}
        """Partition -> (expected offset sought back to, first offset of the batch that made us)."""

    def sought(self, tp: Hashable, offset: int) -> None:
        """The consumer was positioned at `offset` for `tp`: that record is decided next."""
        self._expected[tp] = offset

    def expected(self, tp: Hashable) -> int | None:
        return self._expected.get(tp)

    def forget(self, tp: Hashable) -> None:
        self._expected.pop(tp, None)
        self._reseeking.pop(tp, None)

    def admit(self, tp: Hashable, offsets: list[int]) -> Admitted:
        """Which records of a fetched batch (their `offsets`, ascending) to decide now."""
        expected = self._expected.get(tp)
        first = offsets[0]
        if expected is None or first == expected:
            return Admitted(Admission.DECIDE)
        if first < expected:
            start = next((i for i, offset in enumerate(offsets) if offset >= expected), len(offsets))
            return Admitted(Admission.DECIDE, start=start)
        if self._reseeking.get(tp) == (expected, first):
            log.warning(
                "%s: offsets %d..%d are not records (transaction markers, compacted or expired); "
                "deciding from %d",
                tp,
                expected,
                first - 1,
                first,
            )
            return Admitted(Admission.DECIDE)
        self._reseeking[tp] = (expected, first)
        log.warning("%s: offsets %d..%d not delivered; re-reading from %d", tp, expected, first - 1, expected)
        return Admitted(Admission.RESEEK, seek_to=expected)

    def accepted(self, tp: Hashable, last_offset: int) -> None:
        """Every record up to `last_offset` was taken (decided, or buffered to be decided in order):
        the next one is expected."""
        self._expected[tp] = last_offset + 1
        self._reseeking.pop(tp, None)
