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
from streams.processor import EventProcessor, Outcome
from streams.records import RECHECK, Position, SourceRecord
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
        self.expired_since_checkpoint = False
        """A parked record expired since the last checkpoint: `crash` is not a step then (the known
        defect of `test_a_record_expired_then_rolled_back_is_decided_the_same_way_after_its_member_joins`)."""
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
        self._collect(record, outcome)
        return outcome

    def _collect(self, record: SourceRecord, outcome: Outcome) -> None:
        origin = record.origin
        if outcome.wait:
            decision = "wait"
        elif outcome.duplicate:
            decision = "dup"
            self.duplicates.add(origin)
        elif outcome.dead_letters:
            ((_, value, reason),) = outcome.dead_letters
            decision = f"dl:{reason}"
            if reason == "unknown_company":
                self.expired_since_checkpoint = True
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
        decided = []
        for parked, outcome in self.processor.recheck(0, Position(RECHECK, 0, self.ticks), tick=True):
            self._collect(parked.record, outcome)
            if not outcome.wait:
                decided.append(parked.key)
        self.processor.release(0, decided)

    @rule()
    def take_checkpoint(self) -> None:
        decided = frozenset(o for o, d in self.decisions.items() if d != "wait" and o not in self.pending)
        self.checkpoint = (copy.deepcopy(self.state), len(self.inputs), decided)
        self.expired_since_checkpoint = False

    @precondition(lambda self: not self.expired_since_checkpoint)
    @rule()
    def crash(self) -> None:
        """kill -9: state back to the last checkpoint, inputs since then decided again in order."""
        saved, position, decided = self.checkpoint
        self.state.clear()
        self.state.update(copy.deepcopy(saved))
        self.processor = self._processor()
        for record in self.inputs[position:]:
            self._decide(record, Position(record.topic, 0, record.offset), None)
        parked = {item.record.origin for item in self.processor.waiting(0)}
        self.pending |= {o for o in parked if self.decisions.get(o, "wait") != "wait" and o not in decided}

    # --- invariants ----------------------------------------------------------------------------------

    @invariant()
    def live_aggregates_equal_the_offline_recomputation(self) -> None:
        live = render([self.processor.tallies.partial(0)], self.members.active_profiles())
        pending = self.pending
        rows = [row for row, origin in zip(self.rows, self.row_origins, strict=True) if origin not in pending]
        letters = [reason for origin, reason in self.dead_letters.items() if origin not in pending]
        offline = offline_aggregates(rows, letters, len(self.duplicates - pending))
        assert live == offline

    @invariant()
    def no_event_is_both_accepted_and_dead_lettered(self) -> None:
        assert not self.dead_lettered & set(self.accepted_by)


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
    m.take_checkpoint()
    _join(m)
    _replay(m, order)  # decided (accepted) while still parked
    _checked(m)
    m.crash()  # the state forgets the decision; the row went out
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


@pytest.mark.xfail(
    strict=True,
    reason="known defect: an expiry decision (unknown_company) whose outputs went out before a crash "
    "and whose state did not is decided again after the rollback; if the member joined meanwhile, "
    "the event is accepted after its dead letter (see streams/README.md, known limits)",
)
def test_a_record_expired_then_rolled_back_is_decided_the_same_way_after_its_member_joins() -> None:
    m = StreamMachine()
    order = _place_order(m)
    m.take_checkpoint()
    for _ in range(3):  # past WAIT_S: dead letter unknown_company, outputs sent, record released
        m.tick(5.0)
    assert m.decisions[order.origin] == "dl:unknown_company"
    _join(m)
    m.crash()  # state back to "parked, waited 0 s"; the dead letter is out
    m.tick(5.0)  # the rule's assertion: the same origin must not be decided another way
