"""The live aggregates of the partitions a worker owns, kept as the processor decides.

Two kinds of numbers (`streams.aggregates` renders both):
- business aggregates, derived from entity states (`o:`, `p:`, `f:` keys of the state table): kept as
  running sums per partition (`EntitySums`: an entity change subtracts its old contribution and adds
  the new one), built from the recovered state on first use after a start or a rebalance, so a
  replayed record, which cannot change an entity twice, cannot count twice;
- dead-letter and duplicate counts, one key per counted input record in the aggregates table
  (`count_once`), however often the record is processed.

`version(p)` grows whenever `partial(p)` may have changed, so snapshots skip unchanged partitions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from datetime import datetime
from typing import Any

from streams.aggregates import QUALITY, Delta, EntitySums
from streams.dedupe import DedupeRetention
from streams.records import SourceRecord

BUSINESS_PREFIXES = frozenset({"o:", "p:", "f:"})
COUNTED_PREFIX = "q:"
BASE_PREFIX = "b|"


def counted_key(origin: str) -> str:
    """The aggregates key of the once-only count of the input record at `origin` (`count_once`)."""
    return f"{COUNTED_PREFIX}{origin}"


class PartitionTallies:
    """Running sums and once-only counters over the state and aggregates mappings."""

    def __init__(
        self,
        state: MutableMapping[str, Any],
        aggregates: MutableMapping[str, Any],
        *,
        dedupe_days: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.state = state
        self.aggregates = aggregates
        self.retention = DedupeRetention(dedupe_days)
        self.clock = clock
        self._sums: dict[int, EntitySums] = {}
        self._counts: dict[int, QualityCounts] = {}
        self._versions: dict[int, int] = {}

    # --- business aggregates ---------------------------------------------------------------------

    def _entity_sums(self, partition: int) -> EntitySums:
        sums = self._sums.get(partition)
        if sums is None:  # first use since start-up or a rebalance: index the recovered entities
            sums = EntitySums(
                (key, value)
                for key, value in list(self.state.items())
                if key[:2] in BUSINESS_PREFIXES and value.get("p") == partition
            )
            self._sums[partition] = sums
        return sums

    def entity_changed(
        self, partition: int, key: str, old: dict[str, Any] | None, new: dict[str, Any]
    ) -> None:
        """Keep the partition's running sums current (when indexed; else they are built on use)."""
        if key[:2] in BUSINESS_PREFIXES:
            sums = self._sums.get(partition)
            if sums is not None:
                sums.replace(key, old, new)
            self._changed(partition)

    def _changed(self, partition: int) -> None:
        self._versions[partition] = self._versions.get(partition, 0) + 1

    def forget(self, partition: int) -> None:
        """Drop the running sums of a partition this worker may no longer own (rebuilt on use)."""
        self._sums.pop(partition, None)
        self._counts.pop(partition, None)
        self._changed(partition)

    def version(self, partition: int) -> int:
        """Grows whenever `partial(partition)` may have changed."""
        return self._versions.get(partition, 0)

    def partial(self, partition: int) -> dict[str, Any]:
        """The aggregate entries of one owned partition: derived from its entities, plus its counters."""
        quality = {QUALITY: {"c": self._quality(partition).totals(), "m": {}}}
        return {**self._entity_sums(partition).entries(), **quality}

    # --- dead letters and duplicates ---------------------------------------------------------------

    def _quality(self, partition: int) -> QualityCounts:
        counts = self._counts.get(partition)
        if counts is None:  # first use since start-up or a rebalance: index the recovered keys
            counts = QualityCounts(
                self.aggregates.get(f"{BASE_PREFIX}{partition}"),
                (value for key, value in list(self.aggregates.items()) if key.startswith(COUNTED_PREFIX)),
                partition,
            )
            self._counts[partition] = counts
        return counts

    def count_once(self, record: SourceRecord, delta: Delta) -> None:
        """Count a dead letter or duplicate once per input record, however often it is processed.

        A record is processed more than once after a crash (replay, in any order relative to other
        records: a parked record is decided after later ones) and while it is parked (each
        re-check). The count *is* the key `q:<origin>` = `[day, partition, counter]` in the
        aggregates table: one write, so a crash keeps both or neither. Keys expire after the
        retention (wall-clock days; a replay only reaches back one commit interval); expired days
        are first folded into the partition's base `b|<p>` = `{"c": counts, "through": day}` in one
        write, and keys of days up to `through` are ignored, so a crash between the fold and the
        deletions cannot count twice.
        """
        (counter,) = delta.counts  # dead-letter and duplicate deltas count one record each
        key = counted_key(record.origin)
        if key in self.aggregates:
            return
        partition = record.partition
        counts = self._quality(partition)
        today = self.clock().date().toordinal()
        self.aggregates[key] = [today, partition, counter]
        counts.add(today, counter)
        self._changed(partition)
        stream = f"counted/{partition}/"
        now = self.clock().timestamp()
        if not self.retention.knows(stream):
            self.retention.load(stream, self._counted_of(partition), now)
        expired = self.retention.note(stream, key, today, now)
        if expired:
            self._fold(partition, expired)

    def _fold(self, partition: int, expired: list[str]) -> None:
        days = [value[0] for key in expired if (value := self.aggregates.get(key)) is not None]
        if days:
            self.aggregates[f"{BASE_PREFIX}{partition}"] = self._quality(partition).fold_through(max(days))
        for key in expired:
            self.aggregates.pop(key, None)

    def _counted_of(self, partition: int) -> list[tuple[str, int]]:
        return [
            (key, value[0])
            for key, value in list(self.aggregates.items())
            if key.startswith(COUNTED_PREFIX) and value[1] == partition
        ]


class QualityCounts:
    """Dead-letter and duplicate counts of one partition: its base plus its `q:` keys per day."""

    def __init__(self, base: dict[str, Any] | None, counted: Iterable[list[Any]], partition: int) -> None:
        self.base: Counter[str] = Counter((base or {}).get("c", {}))
        self.through: int = (base or {}).get("through", -1)
        self.days: dict[int, Counter[str]] = {}
        for day, key_partition, counter in counted:
            if key_partition == partition:
                self.add(day, counter)

    def add(self, day: int, counter: str) -> None:
        if day > self.through:
            self.days.setdefault(day, Counter())[counter] += 1

    def fold_through(self, day: int) -> dict[str, Any]:
        """Move the counts of days up to `day` into the base; returns the new base value."""
        for old in [d for d in self.days if d <= day]:
            self.base.update(self.days.pop(old))
        self.through = max(self.through, day)
        return {"c": dict(self.base), "through": self.through}

    def totals(self) -> dict[str, int]:
        total = Counter(self.base)
        for counts in self.days.values():
            total.update(counts)
        return dict(total)
