"""Property-based tests of the stream's decisions: random lifecycles, duplicates, replays and crashes.

A hypothesis state machine feeds `EventProcessor` (over a dict, as one partition's store) random
events of a few companies, orders, patents and factoring requests -- valid and invalid transitions,
members that join late, leave and rejoin, garbage bytes -- plus re-sent copies (duplicates), replays
of an input record (same origin), re-check ticks, checkpoints, and crashes: the state rolls back to
the last checkpoint (as the changelog keeps it) and every input record after that checkpoint is
decided again, while the outputs already produced stay (at-least-once). After every step:

- each input record (origin) has at most one decision, and a repeat gives the same one;
- an event id is accepted through at most one origin, and never both accepted and dead-lettered;
- the live aggregates equal their offline recomputation from the outputs (rows de-duplicated by
  event id, one dead letter and one duplicate per origin) -- the same check the broker tests make.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from streams_fixtures import CUSTOMER, MAKER_MOSCOW, MAKER_REGION, STRANGER, event, joined, wire

from schemas.deadletter import parse_dead_letter
from schemas.events import (
    FactoringDefaulted,
    FactoringFunded,
    FactoringRepaid,
    FactoringRequested,
    MemberLeft,
    MemberUpdated,
    OrderAccepted,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    PatentDealClosed,
    PatentListed,
    PatentWithdrawn,
    Payload,
)
from streams.aggregates import render
from streams.offline import offline_aggregates
from streams.outbox import held_outcome
from streams.processor import EventProcessor
from streams.records import RECHECK, Outcome, Position, SourceRecord
from streams.replica import MemberReplica

COMPANIES = [CUSTOMER, MAKER_MOSCOW, MAKER_REGION, STRANGER]
START = datetime(2020, 9, 25, 12, 0, tzinfo=UTC)
WAIT_S = 6.0


def _payloads(entity: str) -> st.SearchStrategy[Payload]:
    """Payloads of every business type for one order / patent / request id."""
    money = st.sampled_from([Decimal("100.00"), Decimal("2500.50"), Decimal("900")])
    return st.one_of(
        st.builds(
            OrderPlaced,
            order_id=st.just(entity),
            industry=st.sampled_from(["metal_processing", "light_industry"]),
            title=st.just("Parts"),
            quantity=st.integers(1, 5),
            budget_rub=money,
            deadline=st.just(date(2021, 1, 1)),
        ),
        st.builds(OrderAccepted, order_id=st.just(entity), manufacturer_id=st.sampled_from(COMPANIES)),
        st.builds(OrderCompleted, order_id=st.just(entity), amount_rub=money),
        st.builds(OrderCancelled, order_id=st.just(entity)),
        st.builds(
            PatentListed,
            patent_id=st.just(entity),
            kind=st.just("invention"),
            title=st.just("Alloy"),
            offer=st.just("both"),
            price_rub=money,
        ),
        st.builds(
            PatentDealClosed,
            patent_id=st.just(entity),
            buyer_id=st.sampled_from(COMPANIES),
            deal=st.sampled_from(["sale", "license"]),
            amount_rub=money,
        ),
        st.builds(PatentWithdrawn, patent_id=st.just(entity)),
        st.builds(
            FactoringRequested,
            request_id=st.just(entity),
            debtor_id=st.sampled_from(COMPANIES),
            invoice_amount_rub=st.just(Decimal("1000.00")),
            due_date=st.just(date(2020, 12, 1)),
        ),
        st.builds(
            FactoringFunded,
            request_id=st.just(entity),
            advance_rub=st.sampled_from([Decimal("800.00"), Decimal("1200.00")]),  # 1200 > invoice
            fee_rate=st.just(0.05),
        ),
        st.builds(FactoringRepaid, request_id=st.just(entity), amount_rub=money),
        st.builds(FactoringDefaulted, request_id=st.just(entity), outstanding_rub=money),
    )


class StreamMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.state: dict[str, Any] = {}
        self.members = MemberReplica()
        self.processor = self._processor()
        self.inputs: list[SourceRecord] = []
        self.offsets: dict[str, int] = {}
        self.minute = 0
        self.ticks = 0
        self.checkpoint: tuple[dict[str, Any], int, frozenset[str]] = ({}, 0, frozenset())
        """The state, how many inputs it has seen, and the origins whose decision it holds."""
        self.decisions: dict[str, str] = {}
        """origin -> "ok:<event_id>" | "dl:<reason>" | "dup" | "wait" (the latest)."""
        self.rows: list[dict[str, Any]] = []
        self.row_origins: list[str] = []
        self.dead_letters: dict[str, str] = {}
        self.duplicates: set[str] = set()
        self.pending: set[str] = set()
        """Origins decided after the last checkpoint, then parked again by a crash: their outputs
        went out, and the state counts them once they are decided again (a tick, or their member).
        A record decided while still parked (a replay before the tick that releases it) and
        checkpointed is not pending after a crash: the restored state holds its decision."""
        self.accepted_by: dict[str, str] = {}
        self.dead_lettered: set[str] = set()

    def _processor(self) -> EventProcessor:
        return EventProcessor(
            self.state, self.state, self.members, member_wait_s=WAIT_S, dedupe_days=7, clock=lambda: self.now
        )

    # --- feeding ---------------------------------------------------------------------------------------

    def _feed_new(self, topic: str, value: bytes) -> None:
        offset = self.offsets.get(topic, -1) + 1
        self.offsets[topic] = offset
        record = SourceRecord(topic, 0, offset, b"k", value)
        self.inputs.append(record)
        self._decide(record, Position(topic, 0, offset), None)

    def _decide(self, record: SourceRecord, position: Position, waited: float | None) -> Outcome:
        outcome = self.processor.process(record, position, waited_s=waited)
        self._collect(record.origin, outcome)
        return outcome

    def _collect(self, origin: str, outcome: Outcome) -> None:
        """`outcome`'s outputs went out (at least once)."""
        if not (outcome.wait or outcome.duplicate or outcome.sends):
            return  # a replay of a record whose decision is held: its outputs go with the entry
        if outcome.wait:
            decision = "wait"
        elif outcome.duplicate:
            decision = "dup"
            self.duplicates.add(origin)
        elif outcome.dead_letters:
            ((_, value, reason),) = outcome.dead_letters
            decision = f"dl:{reason}"
            assert self.dead_letters.setdefault(origin, reason) == reason, f"{origin} changed its dead letter"
            event_id = parse_dead_letter(value).event_id
            if event_id is not None:
                self.dead_lettered.add(event_id)
        else:
            ((_, _, value),) = outcome.enriched
            row = json.loads(value)
            self.rows.append(row)
            self.row_origins.append(origin)
            decision = f"ok:{row['event_id']}"
            owner = self.accepted_by.setdefault(row["event_id"], origin)
            assert owner == origin, f"{row['event_id']} accepted through {owner} and {origin}"
        previous = self.decisions.get(origin)
        if previous is not None and previous != "wait" and decision != "wait":
            assert previous == decision, f"{origin}: {previous} then {decision}"
        if decision != "wait" or previous is None:
            self.decisions[origin] = decision
        if decision != "wait":
            self.pending.discard(origin)

    @rule(company=st.sampled_from(COMPANIES), kind=st.sampled_from(["joined", "updated", "left"]))
    def member_event(self, company: str, kind: str) -> None:
        payload: Payload = (
            joined(company).payload
            if kind == "joined"
            else MemberUpdated(size="large")
            if kind == "updated"
            else MemberLeft()
        )
        self._feed_new("mic.membership", wire(self._event(company, payload)))

    def _event(self, company: str, payload: Payload) -> Any:
        """An event a minute after the last one, with a deterministic id (reproducible examples)."""
        self.minute += 1
        return event(company, payload, minutes=self.minute, event_id=str(uuid.UUID(int=self.minute)))

    @rule(
        company=st.sampled_from(COMPANIES[:3]),
        data=st.data(),
        entity=st.sampled_from(["E-1", "E-2"]),
    )
    def business_event(self, company: str, data: st.DataObject, entity: str) -> None:
        e = self._event(company, data.draw(_payloads(entity)))
        self._feed_new(e.family.topic, wire(e))

    @rule(garbage=st.binary(max_size=40))
    def garbage(self, garbage: bytes) -> None:
        self._feed_new("mic.orders", garbage)

    @precondition(lambda self: self.inputs)
    @rule(data=st.data())
    def resend_copy(self, data: st.DataObject) -> None:
        """A producer retry: the same bytes at a new offset (a duplicate, or a repeat of garbage)."""
        original = data.draw(st.sampled_from(self.inputs))
        self._feed_new(original.topic, original.value)

    @precondition(lambda self: self.inputs)
    @rule(data=st.data())
    def replay_input(self, data: st.DataObject) -> None:
        """The same input record again (re-read after a rebalance without losing state)."""
        record = data.draw(st.sampled_from(self.inputs))
        self._decide(record, Position(record.topic, 0, record.offset), None)

    @rule(seconds=st.sampled_from([0.5, 2.0, 5.0]))
    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.ticks += 1
        decided = self.processor.recheck(0, Position(RECHECK, 0, self.ticks), tick=True)
        for parked, outcome in decided:
            if outcome.wait:
                self._collect(parked.record.origin, outcome)
        for parked, outcome in self.processor.settle(0, decided):  # sent now; the rest is held
            self._collect(parked.record.origin, outcome)

    @rule()
    def take_checkpoint(self) -> None:
        """The state is durable; then the held decisions go out (`streams.outbox`)."""
        decided = frozenset(o for o, d in self.decisions.items() if d != "wait" and o not in self.pending)
        self.checkpoint = (copy.deepcopy(self.state), len(self.inputs), decided)
        for origin, outcome in self.processor.take_held():
            self._collect(origin, outcome)

    @rule()
    def crash(self) -> None:
        """kill -9: state back to the last checkpoint, inputs since then decided again in order -- as
        one batch, after which the worker re-decides the parked records whose member may have
        arrived when the batch held membership records (`StreamWorker._recheck`, no tick)."""
        saved, position, decided = self.checkpoint
        self.state.clear()
        self.state.update(copy.deepcopy(saved))
        self.processor = self._processor()
        again = self.inputs[position:]
        for record in again:
            self._decide(record, Position(record.topic, 0, record.offset), None)
        if any(record.topic == "mic.membership" for record in again):
            self.ticks += 1
            rechecked = self.processor.recheck(0, Position(RECHECK, 0, self.ticks), tick=False)
            for parked, outcome in rechecked:
                if outcome.wait:
                    self._collect(parked.record.origin, outcome)
            for parked, outcome in self.processor.settle(0, rechecked):
                self._collect(parked.record.origin, outcome)
        parked = {item.record.origin for item in self.processor.waiting(0)}
        self.pending |= {o for o in parked if self.decisions.get(o, "wait") != "wait" and o not in decided}

    # --- invariants ----------------------------------------------------------------------------------

    def _held(self) -> list[tuple[str, Outcome]]:
        """The decisions the state holds in its outbox: promised outputs, sent after a checkpoint."""
        return [
            (key[2:], outcome)
            for key, entry in self.state.items()
            if key.startswith("x:") and (outcome := held_outcome(entry)) is not None
        ]

    @invariant()
    def live_aggregates_equal_the_offline_recomputation(self) -> None:
        """Over the outputs sent and those the state holds (it counted them). The members section
        is the member replica's, which every member state sent updated -- also one sent by a record
        a crash parked again (pending; the replica is never rolled back, like the members topic it
        is built from): it is recomputed from every row sent, pending ones included."""
        live = render([self.processor.tallies.partial(0)], self.members.active_profiles())
        pending = self.pending
        rows = [row for row, origin in zip(self.rows, self.row_origins, strict=True) if origin not in pending]
        sent = list(self.rows)
        letters = {origin: reason for origin, reason in self.dead_letters.items() if origin not in pending}
        for origin, outcome in self._held():
            held = [json.loads(value) for _, _, value in outcome.enriched]
            rows += held
            sent += held
            letters.update((origin, reason) for _, _, reason in outcome.dead_letters)
        offline = offline_aggregates(rows, list(letters.values()), len(self.duplicates - pending))
        offline["members"] = offline_aggregates(sent, [], 0)["members"]
        assert live == offline

    @invariant()
    def no_event_is_both_accepted_and_dead_lettered(self) -> None:
        """Over the outputs sent and those the state holds."""
        accepted = set(self.accepted_by)
        dead_lettered = set(self.dead_lettered)
        for _, outcome in self._held():
            accepted |= {json.loads(value)["event_id"] for _, _, value in outcome.enriched}
            dead_lettered |= {parse_dead_letter(value).event_id for _, value, _ in outcome.dead_letters}
        assert not dead_lettered & accepted


TestStreamMachine = StreamMachine.TestCase
TestStreamMachine.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- sequences the derandomized examples may not reach, spelled out -------------------------------------


def _checked(machine: StreamMachine) -> None:
    machine.live_aggregates_equal_the_offline_recomputation()
    machine.no_event_is_both_accepted_and_dead_lettered()


def _place_order(machine: StreamMachine) -> SourceRecord:
    payload = OrderPlaced(
        order_id="E-1",
        industry="metal_processing",
        title="Parts",
        quantity=1,
        budget_rub=Decimal("100.00"),
        deadline=date(2021, 1, 1),
    )
    e = machine._event(CUSTOMER, payload)
    machine._feed_new(e.family.topic, wire(e))
    return machine.inputs[-1]


def _join(machine: StreamMachine) -> None:
    machine._feed_new("mic.membership", wire(machine._event(CUSTOMER, joined(CUSTOMER).payload)))


def _replay(machine: StreamMachine, record: SourceRecord) -> None:
    machine._decide(record, Position(record.topic, 0, record.offset), None)


def test_a_parked_record_decided_after_the_checkpoint_is_pending_after_a_crash_until_decided_again() -> None:
    m = StreamMachine()
    order = _place_order(m)  # parks: the customer has not joined
    _join(m)  # (the worker would re-decide it now; a re-read of the record comes first here)
    m.take_checkpoint()
    _replay(m, order)  # decided (accepted) while still parked
    _checked(m)
    m.crash()  # the state forgets the decision; the row went out; no membership record is re-read
    assert m.pending == {order.origin}
    _checked(m)
    m.tick(0.5)  # decided again, the same way, and counted once
    assert m.pending == set() and m.decisions[order.origin].startswith("ok:")
    _checked(m)


def test_a_parked_record_decided_before_the_checkpoint_is_not_pending_after_a_crash() -> None:
    m = StreamMachine()
    order = _place_order(m)
    m._feed_new(order.topic, order.value)  # a copy, parked behind the original
    copy_of_order = m.inputs[-1]
    _join(m)
    _replay(m, order)  # accepted while parked
    _replay(m, copy_of_order)  # a counted duplicate while parked
    assert [m.decisions[o.origin][:3] for o in (order, copy_of_order)] == ["ok:", "dup"]
    m.take_checkpoint()  # holds both decisions and the duplicate's count
    m.crash()
    assert m.pending == set()
    _checked(m)


def test_an_expiry_rolled_back_by_a_crash_sent_nothing_and_its_member_may_still_join() -> None:
    m = StreamMachine()
    order = _place_order(m)
    m.take_checkpoint()
    for _ in range(3):  # past WAIT_S: unknown_company, held until the state is durable
        m.tick(5.0)
    assert order.origin not in m.dead_letters and [o for o, _ in m._held()] == [order.origin]
    _checked(m)
    _join(m)
    m.crash()  # the state is back to "parked, waited 0 s": nothing of the expiry went out
    assert m._held() == []
    m.tick(5.0)  # its member is there: accepted, the only decision anybody saw
    assert m.decisions[order.origin].startswith("ok:") and order.origin not in m.dead_letters
    _checked(m)


def test_an_expiry_made_durable_is_sent_and_stays_decided_after_a_crash_and_its_member_joining() -> None:
    m = StreamMachine()
    order = _place_order(m)
    for _ in range(3):
        m.tick(5.0)
    m.take_checkpoint()  # durable, then sent
    assert m.decisions[order.origin] == "dl:unknown_company" and m._held() == []
    _join(m)
    m.crash()  # back to the checkpoint: the held entry is restored, the record is not parked
    assert [o for o, _ in m._held()] == [order.origin]
    m.tick(5.0)
    m.take_checkpoint()  # sent again (at least once), the same dead letter
    assert m.decisions[order.origin] == "dl:unknown_company" and m._held() == []
    _checked(m)


def test_a_record_behind_a_held_expiry_is_not_decided_against_it_before_a_crash() -> None:
    m = StreamMachine()
    _join(m)
    _place_order(m)  # accepted
    accepted = m._event(CUSTOMER, OrderAccepted(order_id="E-1", manufacturer_id=STRANGER))
    m._feed_new(accepted.family.topic, wire(accepted))  # parks: the manufacturer is unknown
    m.take_checkpoint()
    m.tick(5.0)
    m.tick(5.0)
    completed = m._event(CUSTOMER, OrderCompleted(order_id="E-1", amount_rub=Decimal("100.00")))
    m._feed_new(completed.family.topic, wire(completed))  # parks behind the acceptance
    m.tick(2.0)  # the acceptance expires (held); the completion waits behind it
    assert m.decisions[m.inputs[-1].origin] == "wait"
    _checked(m)
    m.crash()
    m.member_event(STRANGER, "joined")
    m.tick(0.5)
    m.tick(0.5)
    assert [m.decisions[r.origin][:3] for r in m.inputs[-3:-1]] == ["ok:", "ok:"]  # accepted, completed
    _checked(m)


def test_a_replay_of_a_held_record_sends_nothing_before_the_checkpoint() -> None:
    m = StreamMachine()
    order = _place_order(m)
    m.take_checkpoint()
    for _ in range(3):
        m.tick(5.0)  # expired: held
    _replay(m, order)  # its input record read again before the checkpoint
    assert order.origin not in m.dead_letters
    m.crash()
    _join(m)
    m.tick(5.0)
    assert m.decisions[order.origin].startswith("ok:")
    _checked(m)


def test_a_rejoin_decides_the_same_whether_its_batch_also_holds_the_release_of_a_parked_leave() -> None:
    """Found by this machine (a `left` parked before its member's first join): decided batch by batch,
    the parked `left` is released by the re-check after the join's batch and the second join that
    follows is a re-join (accepted); replayed after a crash as one batch, the second join came before
    that re-check and was dead-lettered as a join of an active member -- a decision that changed,
    after the accepted row had gone out. A join of an active member now waits behind the entity's
    parked records (one of an inactive member is what they wait for: it never waits)."""
    m = StreamMachine()
    company = COMPANIES[0]
    m.member_event(company=company, kind="left")  # parks: not a member (yet)
    m.member_event(company=company, kind="joined")
    m.crash()  # replayed as one batch; the re-check releases the `left`
    m.member_event(company=company, kind="joined")  # a re-join
    _checked(m)
    m.crash()  # all three replayed as one batch: each decision must be the same
    assert [m.decisions[r.origin][:3] for r in m.inputs] == ["ok:", "ok:", "ok:"]
    assert m.members.active_profile(company) is not None
    _checked(m)


def test_a_parked_update_and_a_rejoin_replayed_after_a_crash_keep_the_aggregates_equal() -> None:
    """Found by this machine run wider (derandomize off, 400 examples): a crash parks the re-join again
    (pending) behind the update, after its member state went out. The replica, like the members topic
    it is built from, keeps that state; the invariant compared it with an offline members section
    that left pending records out. It now derives the members section from every row sent."""
    m = StreamMachine()
    company = COMPANIES[0]
    for kind in ("left", "joined"):
        m.member_event(company=company, kind=kind)
    m.crash()
    for kind in ("updated", "joined"):
        m.member_event(company=company, kind=kind)
    _checked(m)
    m.crash()
    _checked(m)


@pytest.mark.xfail(
    strict=True,
    reason="known, found 2026-12-02 by this machine with derandomize off and 1,000 examples (also at "
    "a6c037b), not analysed: a leave parked before its member's first join is released at the wait's "
    "end after the join, so its decision is held until the state is durable (streams.outbox); a re-join "
    "decided meanwhile is sent first, so the member rows' topic order (join, join, leave) differs from "
    "the decision order the replica and the state followed, and the offline members section disagrees",
)
def test_a_held_leave_and_a_rejoin_keep_the_members_section_equal() -> None:
    m = StreamMachine()
    company = COMPANIES[0]
    m.member_event(company=company, kind="left")  # parks: not a member (yet)
    m.tick(2.0)
    m.tick(2.0)
    m.member_event(company=company, kind="joined")
    m.tick(2.0)  # the leave's wait ends: decided against the joined member, held
    _checked(m)
    m.member_event(company=company, kind="joined")  # a re-join, sent before the held leave
    _checked(m)
