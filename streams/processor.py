"""The per-record decision of the stream: decode, de-duplicate, rule 1 (wait for members), rule 2
(lifecycles), enrichment and aggregate increments -- as plain code over two mutable mappings.

The faust agents hand every record to `EventProcessor.process` with the record's coordinates and
then send what the returned `Outcome` lists; the mappings are the faust tables in the worker and
plain dicts in unit tests. Nothing here raises on bad input: every failure is a dead letter.

State table keys (all written while processing input partition `p`, so they share changelog
partition `p` and reach it in processing order):
- `e:<event_id>`: the de-duplication marker `[event_day, origin, position, outcome]`, written
  last for an event; `origin` = `topic/partition/offset` of the input record, `position` = where it
  was decided when that was not the input record itself (a re-check of a parked record), else
  null, `outcome` = `"ok"` or the dead-letter reason; a fifth element, when present, lists the
  origins of the copies dropped as duplicates (the last `DUPLICATES_REMEMBERED`);
- `m:<company_id>`, `o:<company>:<order_id>`, `p:<company>:<patent_id>`, `f:<company>:<request_id>`:
  entity states (`streams.rules`), each with `applied`: the last event ids applied to it and the
  origin of each, so a replayed record is recognised (same origin) and so is a duplicate whose
  marker already expired (another origin);
- `w:<entity key>`: the origins of the entity's parked records (rule 1), oldest first. A later
  record of the same entity -- another event, or another copy of the same event -- waits behind
  them, so lifecycles are applied in order and a duplicate never overtakes its original even when
  the original waited for its member (a `member.joined` of a member that is not active never
  waits: it is what the others wait for; one of an active member does, see `_may_overtake`);
- `r:<origin>`, `c:<partition>`: the waiting records themselves and the partition's waiting clock
  (`streams.parking`); `parked` lists them for a re-check, `settle` forgets the decided ones;
- `x:<origin>`: a decision held until the state is durable because it depended on the waiting
  clock (`streams.outbox`).

Replays after a crash: a record whose marker has the same `origin` is not a duplicate but a replay
(or a parked record re-checked after a crash): its decision is repeated -- the enriched record or dead
letter is sent again, with the same `event_id`. Business aggregates are derived from entity states
(`streams.aggregates.entity_deltas`), so a repeat cannot count twice; dead letters and duplicates
are counted once per input record (`streams.tallies`). A record without a marker is decided
afresh; entity states already holding its event id are not changed again.
Exception: a record re-published from a dead letter (`REPLAY_HEADER`) whose marker holds a
dead-letter decision is decided again against the current state (that is what a replay is for);
once one copy is accepted, the marker says `ok` and every other copy is a duplicate.
Entities remember only their last `APPLIED_REMEMBERED` events: a replay reaches back one commit
interval, and a duplicate arrives within the retention window of the markers.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from schemas.deadletter import build_dead_letter
from schemas.decode import decode_event
from schemas.events import Event, MemberJoined, OrderAccepted
from schemas.reasons import DeadLetterReason
from streams.aggregates import DUPLICATE_DELTA, delta_for_dead_letter
from streams.dedupe import DedupeRetention
from streams.enrich import MemberDirectory, Profile, enriched_record, related_company
from streams.outbox import Outbox
from streams.parking import ParkingLot
from streams.records import Outcome, Position, SourceRecord, readable_identity
from streams.rules import MEMBER, Violation, apply_event, day_text, entity_key, is_active_member
from streams.tallies import PartitionTallies
from streams.waiting import WaitingRoom

OK = "ok"
APPLIED_REMEMBERED = 32
"""Event ids (with their origin) remembered per entity: enough for any replay or late duplicate."""
DUPLICATES_REMEMBERED = 8
"""Origins of dropped copies kept on an event's marker (for `mic-pipeline trace`)."""
DEAD_LETTER_VALUE_BYTES = 512 * 1024
"""Original values longer than this are cut in the dead letter (it must fit Kafka's 1 MB record limit)."""


def _day_ordinal(event: Event) -> int:
    return event.occurred_at.astimezone(UTC).date().toordinal()


class EventProcessor(WaitingRoom):
    """Decides records against the state of the partitions this worker owns (rule 1's re-checks:
    `streams.waiting.WaitingRoom`)."""

    def __init__(
        self,
        state: MutableMapping[str, Any],
        aggregates: MutableMapping[str, Any],
        directory: MemberDirectory,
        *,
        member_wait_s: float,
        dedupe_days: int,
        max_wait_step_s: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.state = state
        self.aggregates = aggregates
        self.directory = directory
        self.member_wait_s = member_wait_s
        self.retention = DedupeRetention(dedupe_days)
        self.clock = clock
        self.tallies = PartitionTallies(state, aggregates, dedupe_days=dedupe_days, clock=clock)
        self.parking = ParkingLot(state, max_step_s=max_wait_step_s)
        self.outbox = Outbox(state, aggregates, self.parking)
        self.outbox.restore()  # a recovered state: complete what a checkpoint cut short left
        self._utc_event: Event | None = None
        self._utc_value: datetime | None = None

    def _utc(self, event: Event) -> datetime | None:
        """`event.occurred_at` in UTC, converted once per event (None when it has no UTC date)."""
        if event is not self._utc_event:
            self._utc_event = event
            try:
                self._utc_value = event.occurred_at.astimezone(UTC)
            except OverflowError:
                self._utc_value = None
        return self._utc_value

    def process(self, record: SourceRecord, position: Position, *, waited_s: float | None = None) -> Outcome:
        """Decide one record. `waited_s`: how long it has waited for its member (None = first pass).

        A record that must wait (`Outcome.wait`) is parked in the state until a later `parked`
        lists it again.
        """
        outcome = Outcome()
        decoded = decode_event(record.value, topic=record.topic)
        # an `isinstance` that holds is cheap (exact type); one that fails against a msgspec Struct
        # costs ~0.7k instructions (`streams.rules.apply_event`): tested the way it usually holds
        if not isinstance(decoded, Event):
            self._dead_letter(
                outcome,
                record,
                position,
                decoded.reason,
                decoded.detail,
                decoded.event_id,
                decoded.event_type,
                count=True,
            )
            return outcome
        event = decoded
        marker_key = f"e:{event.event_id}"
        marker = self.state.get(marker_key)
        origin = record.origin
        if marker is not None and marker[1] != origin and (marker[3] == OK or not record.replayed):
            outcome.duplicate = True
            self._dequeue(event, record)
            self._note_duplicate(marker_key, marker, origin)
            self.tallies.count_once(record, DUPLICATE_DELTA)
            return outcome
        key = entity_key(event)
        ours = marker if marker is not None and marker[1] == origin else None
        if ours is not None:
            if self.outbox.holds(origin):  # decided: its entry sends the outputs
                return outcome
            if not self._ahead_of_entity(ours, key, event):
                self._repeat(outcome, event, record, position, decision=ours[3])
                return outcome
        queue = self._queue(key, origin)
        behind = bool(queue) and queue[0] != origin and not self._may_overtake(event)
        if behind and waited_s is not None and waited_s >= self.member_wait_s:
            behind = False  # the events ahead did not resolve in time: decide this one on its own
        missing, company, related = self._members(event)
        if behind or missing:
            if behind or waited_s is None or waited_s < self.member_wait_s:
                if origin not in queue:
                    self.state[f"w:{key}"] = [*queue, origin]
                self.parking.park(record, self.clock().timestamp(), entity=key, waiting_for=missing)
                outcome.wait = True
                return outcome
            detail = f"not an active member after {self.member_wait_s:g} s: {', '.join(missing)}"
            self._decide_dead_letter(
                outcome, event, record, position, DeadLetterReason.UNKNOWN_COMPANY, detail
            )
            return outcome
        entity = self.state.get(key)
        applied_from = (entity or {}).get("applied", {}).get(event.event_id)
        if applied_from is not None and applied_from != origin:
            # a duplicate whose marker has already expired (it waited longer than the retention)
            self._dequeue(event, record)
            outcome.duplicate = True
            self.tallies.count_once(record, DUPLICATE_DELTA)
            return outcome
        if applied_from is not None:
            new_state = entity  # a replay of a record whose entity write landed but not its marker
        else:
            region = None
            if type(event.payload) is OrderAccepted:
                region = related.get("region_code") if related else None
            utc = self._utc(event)
            day = day_text(utc.toordinal()) if utc is not None else None
            result = apply_event(entity, event, manufacturer_region=region, day=day)
            if isinstance(result, Violation):
                self._decide_dead_letter(outcome, event, record, position, result.reason, result.detail)
                return outcome
            applied = {**result.get("applied", {}), event.event_id: origin}
            if len(applied) > APPLIED_REMEMBERED:
                applied = dict(list(applied.items())[-APPLIED_REMEMBERED:])
            result["applied"] = applied  # `apply_event` returns a new dict: completed in place
            result["p"] = position.partition
            new_state = result
            self.state[key] = new_state
            self.tallies.entity_changed(position.partition, key, entity, new_state)
        assert new_state is not None
        self._valid(outcome, event, new_state, company, related)
        self._mark(event, record, position, OK, key, queued=bool(queue))
        return outcome

    def _may_overtake(self, event: Event) -> bool:
        """Whether `event` is decided before the entity's parked records (`queue`): only the join of a
        member that is not active, which is what they wait for. A join of an active member waits
        behind them: the parked records (an update or leave that came before the member's first join)
        are released by the re-check after the batch that brought that join, so whether a re-join was
        decided before or after them depended on where a batch ended -- and a replay after a crash
        cuts its batches elsewhere (`tests/test_streams_properties.py`, `test_a_rejoin_...`)."""
        if type(event.payload) is not MemberJoined:
            return False
        return not is_active_member(self.state.get(f"m:{event.company_id}"))

    def _ahead_of_entity(self, marker: list[Any], key: str, event: Event) -> bool:
        """Whether an accepting marker was kept without its entity write (a checkpoint cut short:
        `streams/README.md`, known limits): the record is then decided again, not repeated."""
        if marker[3] != OK:
            return False
        entity = self.state.get(key)
        if entity is None:
            return True
        applied = entity.get("applied", {})  # a full map may have forgotten it: trust the marker
        return event.event_id not in applied and len(applied) < APPLIED_REMEMBERED

    # --- decisions -------------------------------------------------------------------------------

    def _members(self, event: Event) -> tuple[list[str], Profile | None, Profile | None]:
        """Rule 1: the companies the event needs that are not active members (`missing`), with the
        profiles of the company and of the related company of business events (for enrichment:
        the related one need not be a member unless it is an order's manufacturer)."""
        payload = event.payload
        if event.family is MEMBER:
            if type(payload) is MemberJoined or is_active_member(self.state.get(f"m:{event.company_id}")):
                return [], None, None
            return [event.company_id], None, None
        at = event.occurred_at
        company = self.directory.active_profile(event.company_id, at)
        missing = [] if company is not None else [event.company_id]
        other = related_company(event)
        related = self.directory.active_profile(other, at) if other else None
        if related is None and type(payload) is OrderAccepted:
            missing.append(payload.manufacturer_id)
        return missing, company, related

    def _valid(
        self,
        outcome: Outcome,
        event: Event,
        entity: dict[str, Any],
        company: Profile | None = None,
        related: Profile | None = None,
    ) -> None:
        """Send the enriched record of an accepted event (and a member's new state). `company` and
        `related`: the profiles `_members` found for a business event (else looked up here)."""
        family = event.family
        if family is MEMBER:
            member = {
                "s": entity["s"],
                "profile": entity["profile"],
                "seq": entity["seq"],
                "left_at": entity.get("left_at"),
            }
            self.directory.apply(event.company_id, member)
            outcome.members.append((event.company_id, member))
            company, related = entity["profile"], None
        elif company is None:
            _, company, related = self._members(event)
        row = enriched_record(event, company, related, occurred_utc=self._utc(event))
        outcome.enriched.append((family, event.company_id, row))

    def _repeat(
        self,
        outcome: Outcome,
        event: Event,
        record: SourceRecord,
        position: Position,
        *,
        decision: str,
    ) -> None:
        """Send again what an earlier pass decided for this record.

        A repeated dead letter is counted unless its record was (`PartitionTallies.count_once`): a
        crash may have kept the decision's marker but lost its count, and the replay may come from
        another position (a re-check of the parked record).
        """
        if decision == OK:
            entity = self.state.get(entity_key(event))
            if entity is not None:
                self._valid(outcome, event, entity)
            return
        self._dead_letter(
            outcome,
            record,
            position,
            DeadLetterReason(decision),
            "decision repeated after a replay",
            event.event_id,
            event.event_type,
            count=True,
        )

    def _decide_dead_letter(
        self,
        outcome: Outcome,
        event: Event,
        record: SourceRecord,
        position: Position,
        reason: DeadLetterReason,
        detail: str,
    ) -> None:
        self._dead_letter(
            outcome, record, position, reason, detail, event.event_id, event.event_type, count=True
        )
        self._mark(event, record, position, reason.value)

    def failed(self, record: SourceRecord, position: Position, error: Exception) -> Outcome:
        """The outcome of a record whose decision raised (a bug): a `schema_violation` dead letter
        "processing error", with `event_id`/`event_type` when readable, so no record can stop its
        partition. Counted once like any dead letter, unless counting is what failed."""
        outcome = Outcome()
        event_id, event_type = readable_identity(record.value)
        detail = f"processing error: {error!r}"[:500]
        reason = DeadLetterReason.SCHEMA_VIOLATION
        try:
            self._dead_letter(outcome, record, position, reason, detail, event_id, event_type, count=True)
        except Exception:  # the state itself is what failed: send the dead letter uncounted
            outcome = Outcome()
            self._dead_letter(outcome, record, position, reason, detail, event_id, event_type, count=False)
        return outcome

    def _dead_letter(
        self,
        outcome: Outcome,
        record: SourceRecord,
        position: Position,
        reason: DeadLetterReason,
        detail: str,
        event_id: str | None,
        event_type: str | None,
        *,
        count: bool,
    ) -> None:
        value = build_dead_letter(
            reason=reason,
            detail=detail,
            original_topic=record.topic,
            original_partition=record.partition,
            original_offset=record.offset,
            original_key=record.key,
            original_value=record.value,
            event_id=event_id,
            event_type=event_type,
            failed_at=self.clock(),
            max_value_bytes=DEAD_LETTER_VALUE_BYTES,
        )
        outcome.dead_letters.append((record.key, value, reason.value))
        if count:
            self.tallies.count_once(record, delta_for_dead_letter(reason.value))

    def _mark(
        self,
        event: Event,
        record: SourceRecord,
        position: Position,
        decision: str,
        entity: str | None = None,
        *,
        queued: bool = True,
    ) -> None:
        """Write the de-duplication marker (last write of a decision) and expire old markers.
        `queued=False`: the entity's wait queue was seen empty in this decision (nothing to take)."""
        stream = f"{record.topic}/{record.partition}/"
        now = self.clock().timestamp()
        if not self.retention.knows(stream):
            self.retention.load(stream, self._markers_of(stream), now)
        if queued:
            self._dequeue(event, record, entity)
        key = f"e:{event.event_id}"
        utc = self._utc(event)
        day = utc.toordinal() if utc is not None else _day_ordinal(event)
        here = (
            position.offset == record.offset
            and position.topic == record.topic
            and position.partition == record.partition
        )
        self.state[key] = [day, record.origin, None if here else position.text, decision]
        for expired in self.retention.note(stream, key, day, now):
            self.state.pop(expired, None)

    def _note_duplicate(self, key: str, marker: list[Any], origin: str) -> None:
        """Remember the origin of a dropped copy on its event's marker (the last
        `DUPLICATES_REMEMBERED`), so `trace` can say where every copy came from."""
        copies = marker[4] if len(marker) > 4 else []
        if origin not in copies:
            self.state[key] = [*marker[:4], [*copies, origin][-DUPLICATES_REMEMBERED:]]

    def forget_partition(self, partition: int) -> None:
        """Drop the in-memory indexes of a partition this worker may no longer own (rebuilt on use)."""
        self.tallies.forget(partition)
        self.parking.forget(partition)

    def _dequeue(self, event: Event, record: SourceRecord, entity: str | None = None) -> None:
        queue_key = f"w:{entity if entity is not None else entity_key(event)}"
        queue = self.state.get(queue_key)
        if queue and record.origin in queue:
            rest = [origin for origin in queue if origin != record.origin]
            if rest:
                self.state[queue_key] = rest
            else:
                self.state.pop(queue_key, None)

    def _markers_of(self, stream: str) -> list[tuple[str, int]]:
        return [
            (key, value[0])
            for key, value in list(self.state.items())
            if key.startswith("e:") and value[1].startswith(stream)
        ]
