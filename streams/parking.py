"""Rule 1's waiting room: records parked in the state table until their member is there.

A record whose member is not (yet) active is *parked*: the whole record is kept under
`r:<origin>` in the state table, whose changelog partition is the record's input partition, next to
its entity's wait queue (`w:`). Every owned partition that has parked records gets a tick every
`recheck_s` on the internal `<app>-recheck` topic, and the tick's agent re-decides that partition's
parked records in parking order (`streams.app`). The topic is only a clock: a lost, skipped or
replayed tick changes nothing, because the records themselves are in the changelogged state and
are recovered with it after a crash or a rebalance.

Waiting time is counted on a per-partition clock (`c:<p>`) that advances only when a tick is
processed, by at most `max_step_s` per tick, so time in which no worker ran the partition (restart,
rebalance) does not count against `member_wait_s`. A record parked at clock value `since` has
waited `clock - since`.

A parked record is removed (`release`) only after the outputs of its decision are acknowledged by
the broker: after a crash before that it is still parked, and the next tick repeats its decision
(its de-duplication marker says what was decided).

State values (JSON lists, as the faust table stores them):
- `r:<origin>` = `[seq, since, topic, partition, offset, key (base64 or null), value (base64), replayed,
  entity, waiting_for]`: `entity` is the state key of the record's entity, `waiting_for` the company ids
  it waits for (empty when it only waits behind an earlier record of its entity); a re-check skips
  decoding a record while those are still unknown (entries of older versions have neither: re-decided).
- `c:<p>` = `[clock_s, wall_s]`: the partition's clock and the wall time of its last advance.
"""

from __future__ import annotations

import base64
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from streams.records import SourceRecord

PARKED_PREFIX = "r:"
CLOCK_PREFIX = "c:"


@dataclass(frozen=True)
class Parked:
    """A parked record due for a re-check: its state key, the record and how long it has waited."""

    key: str
    record: SourceRecord
    waited_s: float
    entity: str | None = None
    """The state key of its entity (None: unknown, an entry of an older version)."""
    waiting_for: tuple[str, ...] | None = None
    """Company ids it waits for; empty: only behind an earlier record of its entity; None: unknown."""


def _entry(
    seq: int, since: float, record: SourceRecord, entity: str | None, waiting_for: list[str] | None
) -> list[Any]:
    key = base64.b64encode(record.key).decode() if record.key is not None else None
    value = base64.b64encode(record.value).decode()
    coordinates = [record.topic, record.partition, record.offset]
    return [seq, since, *coordinates, key, value, record.replayed, entity, waiting_for]


def _parked(key: str, entry: list[Any], clock: float) -> Parked:
    entity = entry[8] if len(entry) > 8 else None
    waiting_for = tuple(entry[9]) if len(entry) > 9 and entry[9] is not None else None
    return Parked(key, _record(entry), clock - entry[1], entity, waiting_for)


def _record(entry: list[Any]) -> SourceRecord:
    topic, partition, offset, key, value, replayed = entry[2:8]
    return SourceRecord(
        topic,
        partition,
        offset,
        base64.b64decode(key) if key is not None else None,
        base64.b64decode(value),
        bool(replayed),
    )


class ParkingLot:
    """The parked records of the partitions this worker owns, over the state mapping.

    An in-memory index per partition (parking order) is built from the state on first use after a
    start or a rebalance (`forget`), like the processor's entity sums.
    """

    def __init__(self, state: MutableMapping[str, Any], *, max_step_s: float) -> None:
        self.state = state
        self.max_step_s = max_step_s
        self._index: dict[int, dict[str, list[Any]]] = {}
        self._next_seq: dict[int, int] = {}

    def _parked(self, partition: int) -> dict[str, list[Any]]:
        parked = self._index.get(partition)
        if parked is None:
            found = [
                (key, value)
                for key, value in list(self.state.items())
                if key.startswith(PARKED_PREFIX) and value[3] == partition
            ]
            found.sort(key=lambda item: item[1][0])
            parked = dict(found)
            self._index[partition] = parked
            self._next_seq[partition] = max((value[0] for _, value in found), default=-1) + 1
        return parked

    def _clock(self, partition: int) -> list[float]:
        clock: list[float] | None = self.state.get(f"{CLOCK_PREFIX}{partition}")
        return clock if clock is not None else [0.0, 0.0]

    def park(
        self,
        record: SourceRecord,
        now: float,
        *,
        entity: str | None = None,
        waiting_for: list[str] | None = None,
    ) -> None:
        """Keep `record` until it is decided; parking an already parked record changes nothing.

        `entity` and `waiting_for` (see `Parked`) let re-checks skip it cheaply while it must wait."""
        key = f"{PARKED_PREFIX}{record.origin}"
        if key in self.state:
            return
        partition = record.partition
        parked = self._parked(partition)
        clock, _ = self._clock(partition)
        if not parked:  # the clock stood still while nothing waited: restart its wall reference
            self.state[f"{CLOCK_PREFIX}{partition}"] = [clock, now]
        seq = self._next_seq[partition]
        self._next_seq[partition] = seq + 1
        entry = _entry(seq, clock, record, entity, waiting_for)
        self.state[key] = entry
        parked[key] = entry

    def has_parked(self, partition: int) -> bool:
        return bool(self._parked(partition))

    def count(self, partition: int) -> int:
        return len(self._parked(partition))

    def due(self, partition: int, now: float) -> list[Parked]:
        """Advance the partition's clock (one tick) and list its parked records, oldest first."""
        parked = self._parked(partition)
        if not parked:
            return []
        clock, wall = self._clock(partition)
        clock += min(max(now - wall, 0.0), self.max_step_s)
        self.state[f"{CLOCK_PREFIX}{partition}"] = [clock, now]
        return [_parked(key, entry, clock) for key, entry in list(parked.items())]

    def waiting(self, partition: int) -> list[Parked]:
        """The partition's parked records, oldest first, with their waiting time so far -- without a
        tick (the clock does not advance): for re-deciding them as soon as a member arrived."""
        parked = self._parked(partition)
        if not parked:
            return []
        clock, _ = self._clock(partition)
        return [_parked(key, entry, clock) for key, entry in list(parked.items())]

    def release(self, partition: int, keys: list[str]) -> None:
        """Forget decided records (call once their outputs are acknowledged)."""
        parked = self._parked(partition)
        for key in keys:
            parked.pop(key, None)
            self.state.pop(key, None)

    def forget(self, partition: int) -> None:
        """Drop the in-memory index of a partition this worker may no longer own (rebuilt on use)."""
        self._index.pop(partition, None)
        self._next_seq.pop(partition, None)
