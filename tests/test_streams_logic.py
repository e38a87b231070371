"""Unit tests of the stream's decisions, without Kafka: rules, dedupe, waiting, enrichment, aggregates."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from streams_fixtures import (
    CUSTOMER,
    MAKER_MOSCOW,
    MAKER_REGION,
    STRANGER,
    SUPPLIER,
    event,
    factoring_story,
    joined,
    order_story,
    patent_story,
    wire,
)

from schemas.deadletter import parse_dead_letter
from schemas.events import (
    FactoringFunded,
    MemberUpdated,
    OrderAccepted,
    OrderCancelled,
    OrderCompleted,
    PatentDealClosed,
)
from schemas.topics import Family
from schemas.warehouse import column_names
from streams.dedupe import DedupeRetention
from streams.offline import offline_aggregates
from streams.processor import EventProcessor
from streams.records import RECHECK, Outcome, Position, SourceRecord
from streams.replica import MemberReplica

NOW = datetime(2020, 9, 25, 12, 0, tzinfo=UTC)


class Harness:
    """An EventProcessor over dicts, feeding records with increasing offsets like one partition."""

    def __init__(self, *, wait_s: float = 10.0) -> None:
        self.state: dict[str, Any] = {}
        self.aggregates: dict[str, Any] = {}
        self.members = MemberReplica()
        self.now = NOW
        self.processor = EventProcessor(
            self.state,
            self.aggregates,
            self.members,
            member_wait_s=wait_s,
            dedupe_days=7,
            clock=lambda: self.now,
        )
        self.offsets: dict[str, int] = {}
        self.ticks = 0
        self.rows: list[dict[str, Any]] = []
        self.reasons: list[str] = []
        self.duplicates = 0

    def feed(
        self,
        value: bytes,
        topic: str = "mic.orders",
        *,
        offset: int | None = None,
        waited: float | None = None,
        position: Position | None = None,
        replayed: bool = False,
    ) -> Outcome:
        if offset is None:
            offset = self.offsets.get(topic, -1) + 1
            self.offsets[topic] = offset
        record = SourceRecord(topic, 0, offset, b"k", value, replayed)
        outcome = self.processor.process(record, position or Position(topic, 0, offset), waited_s=waited)
        return self._collect(outcome)

    def _collect(self, outcome: Outcome) -> Outcome:
        self.rows.extend(json.loads(v) for _, _, v in outcome.enriched)
        self.reasons.extend(reason for _, _, reason in outcome.dead_letters)
        self.duplicates += outcome.duplicate
        return outcome

    def recheck(self, *, after_s: float = 1.0, checkpointed: bool = True) -> list[Outcome]:
        """One tick `after_s` later and a checkpoint, as the worker runs them: re-decide partition 0's
        parked records, release the decided ones and send their outputs -- those held until the state
        is durable (`streams.outbox`) once the checkpoint made it so. Not `checkpointed`: the worker
        crashed before the checkpoint -- what went out at once is out, the state is as before the
        tick. Returns the outcomes sent."""
        self.now += timedelta(seconds=after_s)
        position = Position(RECHECK, 0, self.ticks)
        self.ticks += 1
        before = copy.deepcopy((self.state, self.aggregates))
        decided = self.processor.recheck(0, position, tick=True)
        sent = [outcome for _, outcome in self.processor.settle(0, decided)]
        if checkpointed:
            sent += [outcome for _, outcome in self.processor.take_held()]
        else:
            self.restore(*before)
        return [self._collect(outcome) for outcome in sent]

    def restore_over(self, store: Any) -> None:
        """A restart on one mapping for state and aggregates (the worker's `PartitionStore`)."""
        self.state = self.aggregates = store
        self.processor = EventProcessor(
            store, store, self.members, member_wait_s=self.processor.member_wait_s, dedupe_days=7,
            clock=lambda: self.now,
        )  # fmt: skip

    def restore(self, state: dict[str, Any], aggregates: dict[str, Any]) -> None:
        """A restart on `state` and `aggregates` as the changelog kept them: a fresh processor."""
        self.state.clear()
        self.state.update(state)
        self.aggregates.clear()
        self.aggregates.update(aggregates)
        self.processor = EventProcessor(
            self.state,
            self.aggregates,
            self.members,
            member_wait_s=self.processor.member_wait_s,
            dedupe_days=7,
            clock=lambda: self.now,
        )

    def parked_keys(self) -> list[str]:
        return [key for key in self.state if key[:2] in ("r:", "w:")]

    def feed_events(self, *events: Any) -> list[Outcome]:
        return [self.feed(wire(e), e.family.topic) for e in events]

    def live(self) -> dict[str, Any]:
        from streams.aggregates import render

        return render([self.processor.tallies.partial(0)], self.members.active_profiles())


def _members(h: Harness) -> None:
    h.feed_events(
        joined(CUSTOMER),
        joined(MAKER_MOSCOW),
        joined(MAKER_REGION, region="66", size="large"),
        joined(SUPPLIER, region="50", size="medium", corporation="rostec"),
    )


def test_valid_stories_are_enriched_with_exact_columns_and_aggregated() -> None:
    h = Harness()
    _members(h)
    h.feed_events(*order_story(CUSTOMER, MAKER_REGION, "O-1"), *order_story(CUSTOMER, MAKER_MOSCOW, "O-2"))
    h.feed_events(*patent_story(CUSTOMER, STRANGER, "P-1"), *factoring_story(SUPPLIER, CUSTOMER, "F-1"))
    assert h.reasons == []
    for row in h.rows:
        family = Family(row["event_type"].partition(".")[0])
        assert tuple(row) == column_names(family)
    accepted = next(r for r in h.rows if r["event_type"] == "order.accepted")
    assert accepted["manufacturer_region_code"] == "66" and accepted["region_code"] == "77"
    completed = next(r for r in h.rows if r["event_type"] == "order.completed")
    assert completed["amount_rub"] == "1500.50" and completed["occurred_at"] == "2020-09-24T07:02:00Z"
    deal = next(r for r in h.rows if r["event_type"] == "patent.deal_closed")
    assert deal["buyer_id"] == STRANGER and deal["buyer_region_code"] is None
    live = h.live()
    day = live["orders"]["per_day"]["2020-09-24"]["metal_processing"]
    assert day == {
        "placed": 2,
        "accepted": 2,
        "completed": 2,
        "cancelled": 0,
        "completed_amount_rub": "3001.00",
    }
    assert live["orders"]["accepted_outside_moscow_share"] == 0.5
    assert live["factoring"]["outstanding_rub"] == "0.00"
    assert live["members"]["active_total"] == 4 and live["members"]["sme_share"] == 0.75
    assert live["members"]["by_state_corporation"] == {"none": 3, "rostec": 1}
    assert live == offline_aggregates(h.rows, h.reasons, h.duplicates)


def test_invalid_transitions_and_advance_above_invoice_are_dead_letters() -> None:
    h = Harness()
    _members(h)
    placed, _accepted, completed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")
    h.feed_events(placed, completed)  # completed before accepted
    requested = factoring_story(SUPPLIER, CUSTOMER, "F-1")[0]
    too_much = event(
        SUPPLIER, FactoringFunded(request_id="F-1", advance_rub=Decimal("1000.01"), fee_rate=0.1)
    )
    h.feed_events(requested, too_much, joined(CUSTOMER))  # and a second join of an active member
    assert h.reasons == ["invalid_transition", "schema_violation", "invalid_transition"]
    live = h.live()
    assert live["quality"]["dead_letters"] == {"invalid_transition": 2, "schema_violation": 1}
    assert live == offline_aggregates(h.rows, h.reasons, h.duplicates)


def test_licenses_repeat_but_nothing_follows_a_sale() -> None:
    h = Harness()
    _members(h)
    listed, license_deal, _ = patent_story(CUSTOMER, STRANGER, "P-1")
    sale = event(
        CUSTOMER, PatentDealClosed(patent_id="P-1", buyer_id=STRANGER, deal="sale", amount_rub=Decimal(9))
    )
    again = event(
        CUSTOMER, PatentDealClosed(patent_id="P-1", buyer_id=STRANGER, deal="license", amount_rub=Decimal(1))
    )
    h.feed_events(
        listed,
        license_deal,
        license_deal.__class__(**{**_asdict(license_deal), "event_id": _uuid()}),
        sale,
        again,
    )
    assert h.reasons == ["invalid_transition"]
    assert h.live()["patents"]["per_day"]["2020-09-24"]["invention"]["deals"] == 3


def _asdict(e: Any) -> dict[str, Any]:
    import msgspec

    return msgspec.structs.asdict(e)


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def test_duplicates_are_dropped_and_counted_but_replays_are_not_duplicates() -> None:
    h = Harness()
    _members(h)
    placed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")[0]
    h.feed(wire(placed))
    h.feed(wire(placed))  # same id, another offset: a duplicate
    replay = h.feed(wire(placed), offset=0)  # the same record again (after a crash): repeated, not counted
    assert h.duplicates == 1
    assert len(replay.enriched) == 1 and not replay.duplicate
    live = h.live()
    assert live["quality"]["duplicates_dropped"] == 1
    assert live["orders"]["per_day"]["2020-09-24"]["metal_processing"]["placed"] == 1


def test_event_waits_for_its_member_then_proceeds_or_expires() -> None:
    h = Harness(wait_s=10)
    placed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")[0]
    first = h.feed(wire(placed))
    assert first.wait and not first.enriched and not first.dead_letters
    assert h.recheck() == []  # its member is still unknown: not even decoded again
    h.feed_events(joined(CUSTOMER))
    released = h.recheck()
    assert len(released) == 1 and len(released[0].enriched) == 1
    assert h.parked_keys() == [] and h.recheck() == []

    orphan = event(STRANGER, MemberUpdated(size="large"))
    assert h.feed(wire(orphan), "mic.membership").wait
    for _ in range(4):  # 8 s of 10
        assert h.recheck(after_s=2.0) == []
    expired = h.recheck(after_s=2.0)[0]
    letter = parse_dead_letter(expired.dead_letters[0][1])
    assert letter.reason == "unknown_company" and letter.event_id == orphan.event_id
    assert h.reasons == ["unknown_company"] and h.parked_keys() == []


def test_time_without_ticks_does_not_count_against_the_wait() -> None:
    h = Harness(wait_s=10)
    orphan = event(STRANGER, MemberUpdated(size="large"))
    h.now -= timedelta(hours=1)  # parked an hour before the worker stopped and restarted
    assert h.feed(wire(orphan), "mic.membership").wait
    assert h.recheck(after_s=3600) == []  # one tick adds at most max_wait_step_s (2 s)
    for _ in range(3):  # 2 + 6 = 8 s of 10
        assert h.recheck(after_s=2.0) == [] and h.reasons == []
    assert h.recheck(after_s=2.0)[0].dead_letters and h.reasons == ["unknown_company"]


def test_an_expiry_lost_in_a_crash_before_the_checkpoint_sent_nothing_and_is_decided_again_once() -> None:
    h = Harness(wait_s=4)
    placed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")[0]
    orphan = event(STRANGER, MemberUpdated(size="large"))
    h.feed(wire(placed))
    h.feed(wire(orphan), "mic.membership")
    h.feed_events(joined(CUSTOMER))
    h.recheck(after_s=2.0)  # placed decided; orphan waited 2 s
    h.feed(wire(orphan), "mic.membership", offset=0)  # the input record replayed: still parked once
    assert len(h.processor.parked(0)) == 1
    assert h.recheck(after_s=2.0, checkpointed=False) == []  # expired, held, then the worker crashed
    assert h.reasons == [] and len(h.processor.waiting(0)) == 1  # nothing went out; parked again
    again = h.recheck(after_s=2.0)  # 4 s again: expires, and goes out after the checkpoint
    assert [reason for _, _, reason in again[0].dead_letters] == ["unknown_company"]
    assert h.reasons == ["unknown_company"] and h.parked_keys() == [] and len(h.processor.outbox) == 0
    live = h.live()
    assert live["quality"]["dead_letters"] == {"unknown_company": 1}
    assert live["orders"]["per_day"]["2020-09-24"]["metal_processing"]["placed"] == 1


def test_an_expiry_is_held_until_the_checkpoint_and_sent_again_after_a_crash_that_kept_it() -> None:
    h = Harness(wait_s=4)
    orphan = event(STRANGER, MemberUpdated(size="large"))
    h.feed(wire(orphan), "mic.membership")
    h.now += timedelta(seconds=2)
    h.processor.recheck(0, Position(RECHECK, 0, 0), tick=True)  # waited 2 s: still waits
    h.now += timedelta(seconds=2)
    decided = h.processor.recheck(0, Position(RECHECK, 0, 1), tick=True)
    assert [o.dead_letters[0][2] for _, o in decided] == ["unknown_company"]
    assert h.processor.settle(0, decided) == []  # decided by its waiting time: held, not sent
    assert h.parked_keys() == ["w:m:" + STRANGER] and len(h.processor.outbox) == 1  # first in its queue
    durable = copy.deepcopy((h.state, h.aggregates))  # the checkpoint wrote the state
    [(origin, outcome)] = h.processor.take_held()  # ...then the worker sends the held outputs
    assert origin == "mic.membership/0/0" and outcome.dead_letters == decided[0][1].dead_letters
    assert not any(key.startswith("x:") for key in h.state)  # the deletion goes with the next checkpoint
    h.restore(*durable)  # kill -9 before that: the entry is back
    h.feed_events(joined(STRANGER))  # its member joins meanwhile
    [resent] = h.recheck(after_s=2.0)  # not parked any more: only the restored entry goes out again
    assert resent.dead_letters == outcome.dead_letters and h.processor.take_held() == []
    assert h.reasons == ["unknown_company"] and [r["event_type"] for r in h.rows] == ["member.joined"]


def _expiring_order(h: Harness) -> tuple[Any, Any]:
    """O-1 placed (accepted), then accepted by a manufacturer that never joined (parks): `R`, and
    completed (parks behind R): `L`. Returns (R, L)."""
    placed, _, completed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")
    h.feed_events(joined(CUSTOMER))
    h.feed(wire(placed))
    accepted = event(CUSTOMER, OrderAccepted(order_id="O-1", manufacturer_id=STRANGER), minutes=1)
    assert h.feed(wire(accepted)).wait
    return accepted, completed


def test_a_record_behind_a_held_expiry_waits_until_the_expiry_is_durable() -> None:
    h = Harness(wait_s=4)
    _, completed = _expiring_order(h)
    h.recheck(after_s=2.0)
    assert h.feed(wire(completed)).wait  # behind the acceptance
    # the acceptance expires (held); the completion must not be decided against it before that is durable
    assert h.recheck(after_s=2.0, checkpointed=False) == [] and h.reasons == []
    h.feed_events(joined(STRANGER))  # after the restart: the manufacturer joined meanwhile
    h.recheck(after_s=0.5)  # the acceptance (held again: it has waited 4 s by now), then the completion
    h.recheck(after_s=0.5)
    assert [r["event_type"] for r in h.rows][-2:] == ["order.accepted", "order.completed"] and h.reasons == []


def test_a_new_record_after_a_held_expiry_parks_behind_it_until_the_checkpoint() -> None:
    h = Harness(wait_s=4)
    _, completed = _expiring_order(h)
    h.recheck(after_s=2.0)
    h.now += timedelta(seconds=2)
    decided = h.processor.recheck(0, Position(RECHECK, 0, 99), tick=True)
    assert [o.held for _, o in decided] == [True] and h.processor.settle(0, decided) == []
    assert h.feed(wire(completed)).wait  # not decided against the held expiry: nothing to send
    [(_, expiry)] = h.processor.take_held()  # the checkpoint: durable, sent
    h._collect(expiry)
    [late] = h.recheck(after_s=0.5)  # now decided, after the expiry
    assert h.reasons == ["unknown_company", "invalid_transition"] and late.dead_letters


def test_a_replay_of_a_held_record_sends_nothing_its_entry_does() -> None:
    h = Harness(wait_s=4)
    accepted, _ = _expiring_order(h)
    h.recheck(after_s=2.0)
    h.now += timedelta(seconds=2)
    h.processor.settle(0, h.processor.recheck(0, Position(RECHECK, 0, 99), tick=True))
    again = h.feed(wire(accepted), offset=1)  # its input record read again before the checkpoint
    assert not again.sends and not again.wait
    [(_, expiry)] = h.processor.take_held()
    assert [reason for _, _, reason in expiry.dead_letters] == ["unknown_company"]


def _worker_store(h: Harness) -> Any:
    """Make `h` decide over one `PartitionStore` for state and aggregates, as the worker does."""
    from streams.store import PartitionStore

    store = PartitionStore(0)
    h.restore_over(store)
    return store


def _recover(h: Harness, changelog: list[tuple[bytes, bytes | None]]) -> Any:
    """kill -9: a new processor over the store rebuilt from `changelog` (it completes held decisions)."""
    from streams.store import PartitionStore

    recovered = PartitionStore(0)
    for key, value in changelog:
        recovered.apply_changelog(key, value)
    h.restore_over(recovered)
    return recovered


@pytest.mark.parametrize("first_offset", [1, 9])  # 9, 10: their entries' keys sort the other way
@pytest.mark.parametrize("kept", ["the held entries", "the cancellation's marker"])
def test_a_checkpoint_cut_short_keeps_its_held_decisions_whole(first_offset: int, kept: str) -> None:
    """A checkpoint keeps a prefix of its changelog records (`streams.outbox`): here the held
    entries first, or everything up to the later decision's marker."""
    h = Harness(wait_s=4)
    store = _worker_store(h)
    h.offsets["mic.orders"] = first_offset - 2
    _expiring_order(h)
    cancelled = event(CUSTOMER, OrderCancelled(order_id="O-1"), minutes=2, event_id=str(uuid.UUID(int=1)))
    assert h.feed(wire(cancelled)).wait  # behind the acceptance
    durable = store.take_changes()
    for tick in range(3):  # the acceptance expires, then the cancellation is decided on its own
        h.now += timedelta(seconds=2)
        h.processor.settle(0, h.processor.recheck(0, Position(RECHECK, 0, tick), tick=True))
    checkpoint = store.take_changes()
    keys = [key.decode() for key, _ in checkpoint]
    assert [key.startswith("x:") for key in keys[:2]] == [True, True]
    cut = 2 if kept == "the held entries" else keys.index(f"e:{cancelled.event_id}") + 1
    recovered = _recover(h, durable + checkpoint[:cut])
    assert not any(key.startswith("r:") for key in recovered)  # released
    assert recovered[f"o:{CUSTOMER}:O-1"]["s"] == "cancelled"
    h.feed_events(joined(STRANGER))  # must not accept the expired acceptance now
    sent = [outcome for _, outcome in h.processor.take_held()]  # in the order they were held
    assert [[r for _, _, r in o.dead_letters] for o in sent] == [["unknown_company"], []]
    assert [json.loads(v)["event_type"] for o in sent for _, _, v in o.enriched] == ["order.cancelled"]
    assert h.parked_keys() == []
    live = h.live()
    assert live["quality"]["dead_letters"] == {"unknown_company": 1}
    assert live["orders"]["per_day"]["2020-09-24"]["metal_processing"]["cancelled"] == 1
    late = event(CUSTOMER, OrderAccepted(order_id="O-1", manufacturer_id=STRANGER), minutes=3)
    assert [r for _, _, r in h.feed(wire(late)).dead_letters] == ["invalid_transition"]


def test_completing_a_held_decision_leaves_what_a_later_decision_wrote_durably() -> None:
    """A member's update expires (held); its `member.joined` arrives in the same interval and is
    decided at once (a join never waits). The checkpoint is cut after the join's marker, before its
    member state: the join is decided again when its record is re-read, and the held update's
    completion must not put back the member state it saw (none)."""
    h = Harness(wait_s=4)
    store = _worker_store(h)
    update = event(STRANGER, MemberUpdated(size="large"), event_id=str(uuid.UUID(int=2**128 - 1)))
    assert h.feed(wire(update), "mic.membership").wait
    durable = store.take_changes()
    for tick in range(2):
        h.now += timedelta(seconds=2)
        h.processor.settle(0, h.processor.recheck(0, Position(RECHECK, 0, tick), tick=True))
    join = event(STRANGER, joined(STRANGER).payload, minutes=1, event_id=str(uuid.UUID(int=1)))
    assert h.feed(wire(join), "mic.membership").members  # decided at once, sent in step 1
    checkpoint = store.take_changes()
    keys = [key.decode() for key, _ in checkpoint]
    assert keys.index(f"e:{join.event_id}") < keys.index(f"e:{update.event_id}")
    recovered = _recover(h, durable + checkpoint[: keys.index(f"e:{join.event_id}") + 1])
    assert f"m:{STRANGER}" not in recovered and recovered[f"e:{join.event_id}"][3] == "ok"
    assert recovered[f"e:{update.event_id}"][3] == "unknown_company"  # the held decision, completed
    again = h.feed(wire(join), "mic.membership", offset=1)  # its offset was not committed: re-read
    assert [m["s"] for _, m in again.members] == ["active"] and recovered[f"m:{STRANGER}"]["s"] == "active"
    [(_, expiry)] = h.processor.take_held()
    assert [r for _, _, r in expiry.dead_letters] == ["unknown_company"]
    later = event(STRANGER, MemberUpdated(size="small"), minutes=5)
    assert h.feed(wire(later), "mic.membership").members  # the member is there: decided at once


def test_an_accepting_marker_kept_without_its_entity_is_decided_again_not_repeated() -> None:
    """A checkpoint cut after a marker (`e:` sorts first) but before its entity write: the re-read
    record must apply its event, not repeat an acceptance the state never saw."""
    h = Harness(wait_s=30)
    store = _worker_store(h)
    h.feed_events(joined(CUSTOMER), joined(MAKER_MOSCOW))
    durable, committed = store.take_changes(), dict(h.offsets)
    placed, accepted, _ = order_story(CUSTOMER, MAKER_MOSCOW, "O-8")
    h.feed(wire(placed))
    checkpoint = store.take_changes()
    keys = [key.decode() for key, _ in checkpoint]
    recovered = _recover(h, durable + checkpoint[: keys.index(f"o:{CUSTOMER}:O-8")])
    assert recovered[f"e:{placed.event_id}"][3] == "ok" and f"o:{CUSTOMER}:O-8" not in recovered
    h.offsets = committed
    assert h.feed(wire(placed)).enriched and recovered[f"o:{CUSTOMER}:O-8"]["s"] == "placed"
    assert h.feed(wire(accepted)).enriched and h.reasons == []


def test_a_released_record_left_first_in_its_wait_queue_does_not_hold_up_its_entity() -> None:
    """A checkpoint cut after a decided parked record's release (`r:`) but before its wait queue's
    update (`w:`): the queue's head is neither parked nor held, and later records must not wait."""
    h = Harness(wait_s=30)
    store = _worker_store(h)
    placed = order_story(CUSTOMER, STRANGER, "O-9")[0]
    h.feed_events(joined(CUSTOMER))
    early = event(CUSTOMER, OrderAccepted(order_id="O-9", manufacturer_id=STRANGER), minutes=1)
    assert h.feed(wire(early)).wait  # its manufacturer is unknown
    durable = store.take_changes()
    h.feed_events(joined(STRANGER))
    h.processor.settle(0, h.processor.recheck(0, Position(RECHECK, 0, 0), tick=False))  # dead letter
    checkpoint = store.take_changes()
    keys = [key.decode() for key, _ in checkpoint]
    recovered = _recover(h, durable + checkpoint[: keys.index("r:mic.orders/0/0") + 1])
    assert recovered[f"w:o:{CUSTOMER}:O-9"] == ["mic.orders/0/0"] and "r:mic.orders/0/0" not in recovered
    assert h.feed(wire(placed)).enriched  # not behind the released record
    assert f"w:o:{CUSTOMER}:O-9" not in recovered


def test_a_held_record_read_again_after_a_cut_short_checkpoint_is_not_decided_again() -> None:
    """A member update held (accepted after its wait, its member joined meanwhile), the checkpoint
    cut after its marker but before the member state; both input records are read again (member
    wait under a commit interval). The held update must stay decided once, by its entry."""
    h = Harness(wait_s=4)
    store = _worker_store(h)
    update = event(STRANGER, MemberUpdated(size="large"), event_id=str(uuid.UUID(int=2**128 - 1)))
    assert h.feed(wire(update), "mic.membership").wait
    durable = store.take_changes()
    h.now += timedelta(seconds=2)
    h.processor.settle(0, h.processor.recheck(0, Position(RECHECK, 0, 0), tick=True))
    join = event(STRANGER, joined(STRANGER).payload, minutes=-1, event_id=str(uuid.UUID(int=1)))
    assert h.feed(wire(join), "mic.membership").members
    h.now += timedelta(seconds=2)
    decided = h.processor.recheck(0, Position(RECHECK, 0, 1), tick=True)
    assert [outcome.held for _, outcome in decided] == [True]
    h.processor.settle(0, decided)
    checkpoint = store.take_changes()
    keys = [key.decode() for key, _ in checkpoint]
    recovered = _recover(h, durable + checkpoint[: keys.index(f"e:{update.event_id}") + 1])
    again = h.feed(wire(update), "mic.membership", offset=0)
    assert not again.wait and not again.sends and h.parked_keys() == [f"w:m:{STRANGER}"]
    h.feed(wire(join), "mic.membership", offset=1)
    [(_, held)] = h.processor.take_held()
    assert [m["s"] for _, m in held.members] == ["active"] and h.parked_keys() == []
    for _ in range(4):
        h.recheck(after_s=2.0)
    assert h.reasons == [] and recovered[f"m:{STRANGER}"]["s"] == "active"


def test_parked_records_survive_a_rebalance_and_keep_their_order() -> None:
    h = Harness()
    placed, accepted, _ = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")
    h.feed_events(joined(MAKER_MOSCOW))
    assert h.feed(wire(placed)).wait and h.feed(wire(accepted)).wait
    state = dict(h.state)
    h.processor.forget_partition(0)  # the index is rebuilt from the (recovered) state
    restored = EventProcessor(
        h.state, h.aggregates, h.members, member_wait_s=10, dedupe_days=7, clock=lambda: h.now
    )
    assert [p.record.offset for p in restored.parked(0)] == [0, 1] and h.state.keys() >= state.keys()
    h.feed_events(joined(CUSTOMER))
    h.processor = restored
    assert [len(outcome.enriched) for outcome in h.recheck()] == [1, 1]
    assert h.parked_keys() == []


def test_accepted_order_waits_for_the_manufacturer() -> None:
    h = Harness()
    h.feed_events(joined(CUSTOMER))
    placed, accepted, _ = order_story(CUSTOMER, MAKER_REGION, "O-1")
    h.feed_events(placed)
    assert h.feed(wire(accepted)).wait
    h.feed_events(joined(MAKER_REGION, region="66"))
    assert len(h.recheck()[0].enriched) == 1


def test_member_updates_carry_the_profile_as_of_the_event() -> None:
    h = Harness()
    h.feed_events(
        joined(CUSTOMER, size="small"), event(CUSTOMER, MemberUpdated(size="large", state_corporation=None))
    )
    row = h.rows[-1]
    assert (
        row["size"] == "large"
        and row["region_code"] == "77"
        and row["changed_fields"] == "size,state_corporation"
    )
    assert h.members.active_profile(CUSTOMER) is not None


def test_decode_failures_become_dead_letters_with_original_coordinates() -> None:
    h = Harness()
    poison = [
        b"\xff\xfe",
        b"[" * 100_000,
        b'{"a": ' + b"9" * 1_000_000 + b"}",
        b'{"a":1,"a":2}',
        b"x" * 10_000_000,
    ]
    for value in poison:
        h.feed(value)
    assert all(reason == "malformed" or reason == "schema_violation" for reason in h.reasons)
    assert len(h.reasons) == len(poison)
    assert h.live()["quality"]["dead_letters"]["malformed"] >= 3


def test_replayed_record_is_not_counted_twice_when_only_part_of_its_state_landed() -> None:
    h = Harness()
    _members(h)
    placed, accepted, _ = order_story(CUSTOMER, MAKER_REGION, "O-1")
    h.feed_events(placed, accepted)
    # simulate a crash that lost the marker of `accepted` but kept its entity and aggregate writes
    del h.state[f"e:{accepted.event_id}"]
    again = h.feed(wire(accepted), offset=1)
    assert len(again.enriched) == 1 and not again.dead_letters
    assert h.live()["orders"]["accepted_total"] == 1


def test_retention_forgets_markers_older_than_the_window() -> None:
    retention = DedupeRetention(7, grace_s=60)
    today = NOW.date().toordinal()
    now = NOW.timestamp()
    assert retention.note("mic.orders/0/", "e:a", today - 10, now) == []
    assert retention.note("mic.orders/0/", "e:b", today - 2, now) == []  # e:a is within the grace
    assert retention.note("mic.orders/0/", "e:c", today - 2, now + 61) == ["e:a"]
    assert retention.note("mic.orders/0/", "e:far-future", today + 400, now + 61) == []  # capped
    assert retention.size("mic.orders/0/") == 3
    assert retention.note("mic.patents/0/", "e:late", today - 30, now) == []  # its own watermark
    with pytest.raises(ValueError):
        DedupeRetention(0)


def test_offline_ignores_repeated_rows() -> None:
    h = Harness()
    _members(h)
    h.feed_events(*order_story(CUSTOMER, MAKER_MOSCOW, "O-1"))
    assert offline_aggregates(h.rows + h.rows, [], 0) == h.live()


def test_money_totals_are_exact() -> None:
    h = Harness()
    _members(h)
    for i in range(3):
        placed, accepted, _ = order_story(CUSTOMER, MAKER_MOSCOW, f"O-{i}")
        done = event(CUSTOMER, OrderCompleted(order_id=f"O-{i}", amount_rub=Decimal("0.10")), minutes=3)
        h.feed_events(placed, accepted, done)
    assert h.live()["orders"]["per_day"]["2020-09-24"]["metal_processing"]["completed_amount_rub"] == "0.30"


def test_later_events_of_an_entity_wait_behind_a_waiting_one() -> None:
    h = Harness()
    placed, accepted, completed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")
    h.feed_events(joined(MAKER_MOSCOW))
    assert h.feed(wire(placed)).wait  # customer not a member yet
    h.feed_events(joined(CUSTOMER))
    assert h.feed(wire(accepted)).wait  # customer fine now, but placed is still waiting
    released = h.recheck()
    assert [json.loads(outcome.enriched[0][2])["event_type"] for outcome in released] == [
        "order.placed",
        "order.accepted",
    ]
    h.feed_events(completed)
    assert h.reasons == [] and h.parked_keys() == []


def test_duplicate_is_recognised_even_after_its_marker_expired() -> None:
    h = Harness()
    _members(h)
    placed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")[0]
    h.feed(wire(placed))
    del h.state[f"e:{placed.event_id}"]  # as if the retention dropped it while the duplicate waited
    late = h.feed(wire(placed))
    assert late.duplicate and not late.enriched
    assert h.live()["quality"]["duplicates_dropped"] == 1


def test_dead_letter_replayed_twice_lands_once() -> None:
    """`deadletters replay` re-publishes a failed event (twice after a restart dead-lettered it twice):
    the first copy is decided again against the current state, the second is a duplicate."""
    h = Harness(wait_s=10)
    placed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")[0]
    assert h.feed(wire(placed)).wait
    for _ in range(5):
        h.recheck(after_s=2.0)
    assert h.reasons == ["unknown_company"]
    h.feed_events(joined(CUSTOMER))
    first = h.feed(wire(placed), offset=10, replayed=True)
    second = h.feed(wire(placed), offset=11, replayed=True)
    assert len(first.enriched) == 1 and not first.duplicate
    assert second.duplicate and not second.enriched and not second.dead_letters
    again = h.feed(wire(placed), offset=10, replayed=True)  # the first copy replayed after a crash
    assert len(again.enriched) == 1 and not again.duplicate
    live = h.live()
    assert live["orders"]["per_day"]["2020-09-24"]["metal_processing"]["placed"] == 1
    assert live["quality"]["duplicates_dropped"] == 1
    assert live["quality"]["dead_letters"] == {"unknown_company": 1}


def test_replayed_copy_of_an_accepted_event_and_plain_repeat_of_a_failed_one_are_duplicates() -> None:
    h = Harness()
    _members(h)
    placed, accepted, completed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")
    h.feed_events(placed, completed)  # completed before accepted: invalid_transition
    assert h.reasons == ["invalid_transition"]
    assert h.feed(wire(completed)).duplicate  # not a replay: another copy of the same failed event
    assert h.feed(wire(placed), replayed=True).duplicate  # accepted already
    h.feed_events(accepted)
    retried = h.feed(wire(completed), replayed=True)
    assert len(retried.enriched) == 1 and h.reasons == ["invalid_transition"]
    assert h.feed(wire(completed), replayed=True).duplicate
    assert h.live() == offline_aggregates(h.rows, h.reasons, h.duplicates)


def test_replay_header_matches_the_operator_command() -> None:
    from mic_pipeline.ops.deadletter_io import REPLAY_HEADER as OPS_HEADER
    from streams.records import REPLAY_HEADER, is_replayed

    assert REPLAY_HEADER == OPS_HEADER
    assert is_replayed([(OPS_HEADER, b"mic.deadletter:0:5")]) and is_replayed({OPS_HEADER: b"x"})
    assert not is_replayed(None) and not is_replayed([("trace", b"1")])


def test_running_sums_follow_each_change_like_a_full_recomputation() -> None:
    from streams.aggregates import entities_partial

    h = Harness()
    _members(h)
    assert h.live()["orders"]["accepted_total"] == 0  # indexes the partition before the changes below
    version = h.processor.tallies.version(0)
    h.feed_events(*order_story(CUSTOMER, MAKER_REGION, "O-1"), *factoring_story(SUPPLIER, CUSTOMER, "F-1"))
    h.feed_events(*factoring_story(SUPPLIER, CUSTOMER, "F-2")[:2], *patent_story(CUSTOMER, STRANGER, "P-1"))
    assert h.processor.tallies.version(0) > version
    entities = [(k, v) for k, v in h.state.items() if k[:2] in ("o:", "p:", "f:")]
    partial = h.processor.tallies.partial(0)
    assert {k: v for k, v in partial.items() if k != "quality"} == entities_partial(entities)
    live = h.live()
    assert live["factoring"]["outstanding_rub"] == "800.00"  # F-1 repaid (removed), F-2 funded
    assert live == offline_aggregates(h.rows, h.reasons, h.duplicates)


def test_dead_letter_count_lost_in_a_crash_is_restored_once_by_a_replay_from_another_position() -> None:
    h = Harness()
    _members(h)
    placed, _accepted, completed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")
    h.feed_events(placed, completed)  # completed before accepted: invalid_transition at mic.orders/0/1
    h.aggregates.clear()  # a crash kept the decision's marker but lost its count (aggregates changelog)
    h.processor.forget_partition(0)
    for position in (Position(RECHECK, 0, 5), Position(RECHECK, 0, 6)):
        again = h.feed(wire(completed), offset=1, position=position)
        assert [reason for _, _, reason in again.dead_letters] == ["invalid_transition"]
    assert h.live()["quality"]["dead_letters"] == {"invalid_transition": 1}


def test_counts_do_not_depend_on_the_order_records_are_decided_in() -> None:
    """A record parked before a crash is decided after later ones when replayed: still counted once."""
    h = Harness()
    placed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")[0]
    h.feed(b"not json", offset=9)  # a later record counted first
    h.feed(b"{", offset=4)  # an earlier one decided afterwards
    h.feed(b"{", offset=4)  # and replayed
    _members(h)
    h.feed(wire(placed), offset=2)
    assert h.feed(wire(placed), offset=1).duplicate  # a copy at an earlier offset, decided later
    assert h.live()["quality"] == {"dead_letters": {"malformed": 2}, "duplicates_dropped": 1}


def test_a_duplicate_never_overtakes_its_parked_original() -> None:
    h = Harness()
    placed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")[0]
    h.feed_events(joined(MAKER_MOSCOW))
    assert h.feed(wire(placed)).wait  # the original waits for its customer
    h.feed_events(joined(CUSTOMER))
    assert h.feed(wire(placed)).wait  # the copy, although its member is there now, waits behind it
    original, copy = h.recheck()
    assert len(original.enriched) == 1 and copy.duplicate and not copy.enriched
    assert h.state[f"e:{placed.event_id}"][1] == "mic.orders/0/0" and h.parked_keys() == []


def test_old_counts_are_folded_into_the_base_once_even_if_a_crash_keeps_their_keys() -> None:
    h = Harness()
    for offset in range(3):
        h.feed(b"{", offset=offset)
    old_keys = {k: v for k, v in h.aggregates.items() if k.startswith("q:")}
    h.now += timedelta(days=9)  # the q: keys fall out of the 7-day retention (and the replay grace)
    h.feed(b"{", offset=3)
    assert not any(key in h.aggregates for key in old_keys) and h.aggregates["b|0"]["c"] == {
        "dead_letters.malformed": 3
    }
    h.aggregates.update(old_keys)  # a crash kept the folded keys (their deletions were lost)
    h.processor.forget_partition(0)
    assert h.live()["quality"]["dead_letters"] == {"malformed": 4}


def test_a_recheck_decodes_only_records_whose_member_arrived_or_that_expired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import streams.processor as processor_module

    decoded: list[bytes] = []
    real_decode = processor_module.decode_event

    def counting_decode(value: bytes, **kwargs: Any) -> Any:
        decoded.append(value)
        return real_decode(value, **kwargs)

    monkeypatch.setattr(processor_module, "decode_event", counting_decode)
    h = Harness(wait_s=10)
    placed, accepted, _ = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")
    h.feed_events(joined(MAKER_MOSCOW))
    orphan = event(STRANGER, MemberUpdated(size="large"))
    assert h.feed(wire(placed)).wait and h.feed(wire(accepted)).wait  # accepted waits behind placed
    assert h.feed(wire(orphan), "mic.membership").wait
    decoded.clear()
    assert h.recheck() == [] and decoded == []  # CUSTOMER and STRANGER unknown: nothing decoded
    h.feed_events(joined(CUSTOMER))
    decoded.clear()
    released = h.processor.recheck(0, Position(RECHECK, 0, 99), tick=False)  # as after a membership batch
    assert [len(outcome.enriched) for _, outcome in released] == [1, 1]  # placed, then accepted
    assert decoded == [wire(placed), wire(accepted)]  # the orphan was not decoded
    h.processor.release(0, [parked.key for parked, _ in released])
    assert [p.record.topic for p in h.processor.waiting(0)] == ["mic.membership"]


def test_member_counts_kept_incrementally_equal_a_full_recount() -> None:
    from schemas.events import MemberLeft
    from streams.aggregates import render_members

    h = Harness()
    _members(h)
    h.feed_events(
        event(CUSTOMER, MemberUpdated(size="large", state_corporation="rosatom"), minutes=1),
        event(SUPPLIER, MemberLeft(), minutes=2),
        event(SUPPLIER, joined(SUPPLIER, size="small").payload, minutes=3),  # rejoins, now small
    )
    section = h.members.members_section()
    assert section == render_members(h.members.active_profiles())
    assert section["active_total"] == 4 and section["by_size"]["small"] >= 1


def test_a_record_whose_decision_raised_is_a_counted_dead_letter_with_its_identity() -> None:
    h = Harness()
    placed = order_story(CUSTOMER, MAKER_MOSCOW, "O-1")[0]
    record = SourceRecord("mic.orders", 0, 7, b"k", wire(placed))
    for _ in range(2):  # decided again after a crash: counted once
        outcome = h.processor.failed(record, Position("mic.orders", 0, 7), RuntimeError("boom"))
        letter = parse_dead_letter(outcome.dead_letters[0][1])
        assert letter.reason == "schema_violation"
        assert letter.detail == "processing error: RuntimeError('boom')"
        assert (letter.event_id, letter.event_type) == (placed.event_id, "order.placed")
        assert (letter.original_topic, letter.original_offset) == ("mic.orders", 7)
    assert h.live()["quality"]["dead_letters"] == {"schema_violation": 1}


def test_payload_types_are_leaves_so_exact_type_tests_decide_as_isinstance_would() -> None:
    """`streams.rules.apply_event` and the processor test payload types with `type(p) is C` (a failed
    `isinstance` against a msgspec Struct is ~0.7k instructions): right only while no payload type
    subclasses another: every type of the registry (and any other, e.g. a test's next version) is a
    direct, childless subclass of `Payload`."""
    from schemas.events import Payload
    from schemas.registry import DEFAULT_REGISTRY

    types = {spec.payload_type for spec in DEFAULT_REGISTRY.all_specs()}
    assert types and types <= set(Payload.__subclasses__())
    assert all(not kind.__subclasses__() for kind in Payload.__subclasses__())


def test_day_text_is_the_iso_date_of_the_ordinal() -> None:
    from streams.rules import day_text

    for moment in (datetime(2000, 1, 1, tzinfo=UTC), datetime(2099, 12, 31, 23, 59, tzinfo=UTC)):
        assert day_text(moment.toordinal()) == moment.date().isoformat()
