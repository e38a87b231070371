"""Rule 1's re-checks: parked records decided again, held decisions, and the entities' wait queues.

The part of `streams.processor.EventProcessor` that decides records the state kept waiting
(`streams.parking`) -- on a tick, or once their member arrived -- and holds the decisions that
depended on the waiting clock (`streams.outbox`). A mixin: it works on the processor's state,
parking lot, outbox and directory, and decides each record with the processor's `process`.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from datetime import datetime
from typing import Any

from schemas.decode import DecodeFailure, decode_event
from streams.enrich import MemberDirectory
from streams.outbox import Outbox
from streams.parking import PARKED_PREFIX, Parked, ParkingLot
from streams.records import Outcome, Position, SourceRecord
from streams.rules import entity_key
from streams.tallies import counted_key


class WaitingRoom:
    """Re-checks of parked records (see the module doc); mixed into `EventProcessor`."""

    state: MutableMapping[str, Any]
    parking: ParkingLot
    outbox: Outbox
    directory: MemberDirectory
    member_wait_s: float
    clock: Callable[[], datetime]

    def process(self, record: SourceRecord, position: Position, *, waited_s: float | None = None) -> Outcome:
        raise NotImplementedError  # EventProcessor.process

    def parked(self, partition: int) -> list[Parked]:
        """One re-check tick of `partition`: its parked records, oldest first, with their waiting time.

        Decide each with `process(record, Position(RECHECK, partition, tick offset), waited_s=...)`;
        those that no longer wait are released with `release` once their outputs are acknowledged.
        """
        return self.parking.due(partition, self.clock().timestamp())

    def waiting(self, partition: int) -> list[Parked]:
        """`partition`'s parked records without a tick: re-decide them once their member arrived
        (their waiting time does not advance, so only ticks can expire them)."""
        return self.parking.waiting(partition)

    def recheck(self, partition: int, position: Position, *, tick: bool) -> list[tuple[Parked, Outcome]]:
        """Re-decide the parked records of `partition` that may be decided now, oldest first.

        `tick` advances the partition's waiting clock (`parked`); without it (`waiting`) only records
        whose members arrived are decided. A record is skipped without decoding it while a company
        it waits for is still unknown, or while an earlier record of its entity is still parked --
        unless it has waited `member_wait_s`. A decision made because the record waited
        `member_wait_s` depends on the waiting clock, which a crash rolls back: when it has outputs
        it is held (`Outcome.held`, `streams.outbox`) and the rest of its entity waits behind it
        until `take_held`; a record whose decision is held is skipped. Hand the result to `settle`.
        """
        parked = self.parked(partition) if tick else self.waiting(partition)
        blocked: set[str] = set()
        decided: list[tuple[Parked, Outcome]] = []
        for item in parked:
            entity = item.entity
            if self.outbox.holds(item.record.origin):  # a restored entry: decided, sent at the checkpoint
                if entity is not None:
                    blocked.add(entity)
                continue
            if item.waited_s < self.member_wait_s and entity is not None:
                if entity in blocked:
                    continue
                if item.waiting_for and not all(self._known(company) for company in item.waiting_for):
                    blocked.add(entity)
                    continue
            if item.waited_s >= self.member_wait_s:
                outcome = self._decide_held(item, position)
            else:
                outcome = self.process(item.record, position, waited_s=item.waited_s)
            if (outcome.wait or outcome.held) and entity is not None:
                blocked.add(entity)
            decided.append((item, outcome))
        return decided

    def _decide_held(self, item: Parked, position: Position) -> Outcome:
        """Decide a record that has waited `member_wait_s`, holding the decision if it sends
        anything (`streams.outbox`)."""
        record = item.record
        event = decode_event(record.value, topic=record.topic)
        if isinstance(event, DecodeFailure):  # it was decoded when parked: only if the rules changed
            return self.process(record, position, waited_s=item.waited_s)
        entity = item.entity if item.entity is not None else entity_key(event)
        marker = f"e:{event.event_id}"
        before = self.outbox.before(entity=entity, marker=marker, count=counted_key(record.origin))
        outcome = self.process(record, position, waited_s=item.waited_s)
        if not outcome.wait and outcome.sends:
            self.outbox.hold(record.origin, outcome, entity=entity, marker=marker, before=before)
            outcome.held = True
        return outcome

    def _known(self, company_id: str) -> bool:
        return self.directory.knows(company_id) or f"m:{company_id}" in self.state

    def release(self, partition: int, keys: list[str]) -> None:
        """Forget parked records that were decided (their outputs are acknowledged)."""
        self.parking.release(partition, keys)

    def settle(self, partition: int, decided: list[tuple[Parked, Outcome]]) -> list[tuple[Parked, Outcome]]:
        """Release the records a `recheck` decided and return those whose outputs go out now: all
        but the held ones (`Outcome.held`, sent by `take_held`). Released at once: the checkpoint
        writes the release only after the outputs are acknowledged."""
        self.parking.release(partition, [item.key for item, outcome in decided if not outcome.wait])
        return [(item, outcome) for item, outcome in decided if not outcome.wait and not outcome.held]

    def take_held(self) -> list[tuple[str, Outcome]]:
        """The held decisions as `(origin, outcome)`, taken out of the outbox: call once a checkpoint
        made the state durable, and hand their outputs over before the deletions are written."""
        return self.outbox.take()

    def _queue(self, key: str, origin: str) -> list[str]:
        """The wait queue of entity `key`, without heads that are neither parked nor held (their
        release was kept without the queue's update by a checkpoint cut short)."""
        queue_key = f"w:{key}"
        queue: list[str] = self.state.get(queue_key) or []
        stale = 0
        for head in queue:
            if head == origin or f"{PARKED_PREFIX}{head}" in self.state or self.outbox.holds(head):
                break
            stale += 1
        if stale:
            queue = queue[stale:]
            if queue:
                self.state[queue_key] = queue
            else:
                self.state.pop(queue_key, None)
        return queue
