"""The simulator: coherent lifecycles, determinism, and a ground truth that matches the contract.

`ContractOracle` is an independent, minimal reading of the contract's rules (decode, then rules 1-3
in production order); every record's ground-truth `expected` must be what it says.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from producers.anomalies import BUILDERS
from producers.ground_truth import DUPLICATE, VALID, GroundTruthWriter, read_ground_truth, sha256_hex
from producers.simulator import SimRecord, SimulationConfig, generate
from schemas.decode import DecodeFailure, decode_event
from schemas.events import Event, FactoringFunded, OrderAccepted, OrderPlaced

_TRANSITIONS: dict[str, tuple[set[str | None], str]] = {
    "order.placed": ({None}, "placed"),
    "order.accepted": ({"placed"}, "accepted"),
    "order.completed": ({"accepted"}, "completed"),
    "order.cancelled": ({"placed", "accepted"}, "cancelled"),
    "patent.listed": ({None}, "listed"),
    "patent.deal_closed": ({"listed"}, "listed"),
    "patent.withdrawn": ({"listed"}, "withdrawn"),
    "factoring.requested": ({None}, "requested"),
    "factoring.funded": ({"requested"}, "funded"),
    "factoring.repaid": ({"funded"}, "repaid"),
    "factoring.defaulted": ({"funded"}, "defaulted"),
}


def _entity_id(event: Event) -> str:
    payload = event.payload
    for name in ("order_id", "patent_id", "request_id"):
        if hasattr(payload, name):
            return str(getattr(payload, name))
    raise AssertionError(event.event_type)


class ContractOracle:
    """Decode + business rules 1-3, applied in production order."""

    def __init__(self) -> None:
        self.active: set[str] = set()
        self.states: dict[tuple[str, str], str] = {}
        self.seen_ids: set[str] = set()
        self.invoices: dict[str, Decimal] = {}

    def outcome(self, record: SimRecord) -> tuple[str, Event | None]:
        decoded = decode_event(record.value, topic=record.truth.topic)
        if isinstance(decoded, DecodeFailure):
            return decoded.reason.value, None
        if decoded.event_id in self.seen_ids:
            return DUPLICATE, decoded
        verdict = self._rules(decoded)
        if verdict == VALID:
            self.seen_ids.add(decoded.event_id)
        return verdict, decoded

    def _rules(self, event: Event) -> str:
        family, _, _ = event.event_type.partition(".")
        if family == "member":
            return self._membership(event)
        if event.company_id not in self.active:
            return "unknown_company"
        payload = event.payload
        if isinstance(payload, OrderAccepted) and payload.manufacturer_id not in self.active:
            return "unknown_company"
        key = (family, _entity_id(event))
        allowed, target = _TRANSITIONS[event.event_type]
        if self.states.get(key) not in allowed:
            return "invalid_transition"
        if event.event_type == "patent.deal_closed" and event.payload.deal == "sale":  # type: ignore[attr-defined]
            target = "sold"
        self.states[key] = target
        return VALID

    def _membership(self, event: Event) -> str:
        if event.event_type == "member.joined":
            if event.company_id in self.active:
                return "invalid_transition"
            self.active.add(event.company_id)
            return VALID
        if event.company_id not in self.active:
            return "unknown_company"
        if event.event_type == "member.left":
            self.active.discard(event.company_id)
        return VALID


def _take(config: SimulationConfig, count: int) -> list[SimRecord]:
    return list(itertools.islice(generate(config), count))


@pytest.fixture(scope="module")
def mixed_records() -> list[SimRecord]:
    return _take(SimulationConfig(seed=11, scale=0.05, invalid_fraction=0.1), 30_000)


def test_every_record_is_what_the_ground_truth_says(mixed_records: list[SimRecord]) -> None:
    oracle = ContractOracle()
    mismatches = []
    for record in mixed_records:
        got, _ = oracle.outcome(record)
        if got != record.truth.expected:
            mismatches.append((record.truth.seq, record.truth.variant, record.truth.expected, got))
    assert mismatches == []


def test_ground_truth_ids_and_hashes_match_the_bytes(mixed_records: list[SimRecord]) -> None:
    for record in mixed_records:
        truth = record.truth
        assert truth.value_sha256 == sha256_hex(record.value)
        assert truth.key == (record.key.decode() if record.key is not None else None)
        decoded = decode_event(record.value, topic=truth.topic)
        if isinstance(decoded, DecodeFailure):
            assert (decoded.event_id, decoded.event_type) == (truth.event_id, truth.event_type), truth
        else:
            assert (decoded.event_id, decoded.event_type) == (truth.event_id, truth.event_type)
            assert truth.key == decoded.company_id


def test_every_invalid_class_and_variant_is_present(mixed_records: list[SimRecord]) -> None:
    expected = Counter(r.truth.expected for r in mixed_records)
    reasons = {reason.value for reason in BUILDERS}
    assert reasons <= set(expected)
    variants = {r.truth.variant for r in mixed_records if r.truth.variant}
    assert variants == {builder.__name__ for builders in BUILDERS.values() for builder in builders}
    invalid = sum(n for name, n in expected.items() if name not in (VALID, DUPLICATE))
    assert invalid == pytest.approx(0.1 * len(mixed_records), abs=2)
    assert expected[DUPLICATE] == pytest.approx(0.02 * len(mixed_records), abs=2)
    per_reason = [expected[reason] for reason in reasons]
    assert max(per_reason) - min(per_reason) <= 1


def test_lifecycles_are_coherent(mixed_records: list[SimRecord]) -> None:
    valid_events = [decode_event(r.value) for r in mixed_records if r.truth.expected == VALID]
    events = [e for e in valid_events if isinstance(e, Event)]
    assert len(events) == len(valid_events)
    membership = {"member.joined", "member.updated", "member.left"}
    assert {e.event_type for e in events} == set(_TRANSITIONS) | membership
    times = [e.occurred_at for e in events]
    assert times == sorted(times)
    profiles: dict[str, str] = {}
    invoices: dict[str, Decimal] = {}
    accepted_outside = accepted = 0
    for event in events:
        payload = event.payload
        if event.event_type == "member.joined":
            profiles[event.company_id] = payload.region_code  # type: ignore[attr-defined]
        if isinstance(payload, OrderPlaced) and payload.industry == "light_industry":
            assert event.occurred_at.date() >= date(2020, 9, 18)
        if isinstance(payload, OrderAccepted):
            accepted += 1
            assert payload.manufacturer_id != event.company_id
            accepted_outside += profiles[payload.manufacturer_id] != "77"
        if event.event_type == "factoring.requested":
            invoices[payload.request_id] = payload.invoice_amount_rub  # type: ignore[attr-defined]
        if isinstance(payload, FactoringFunded):
            assert payload.advance_rub <= invoices[payload.request_id]
            assert 0 < payload.fee_rate < 1
    assert accepted > 100
    assert accepted_outside / accepted > 0.5
    joined = Counter(e.company_id for e in events if e.event_type == "member.joined")
    left = Counter(e.company_id for e in events if e.event_type == "member.left")
    assert sum(left.values()) > 0
    assert all(joined[c] - left[c] in (0, 1) for c in joined)
    # Whatever order the stream reads the topics in, no event can meet its company's member.left
    # first: a member that leaves was never named outside mic.membership before.
    first_named: dict[str, int] = {}
    first_left: dict[str, int] = {}
    for index, event in enumerate(events):
        if event.event_type == "member.left":
            first_left.setdefault(event.company_id, index)
        elif not event.event_type.startswith("member."):
            first_named.setdefault(event.company_id, index)
            if isinstance(event.payload, OrderAccepted):
                first_named.setdefault(event.payload.manufacturer_id, index)
    assert all(first_named.get(c, len(events)) > index for c, index in first_left.items())


def test_factoring_defaults_are_rare_and_light_industry_opens_in_september() -> None:
    records = _take(SimulationConfig(seed=5, scale=0.02, clock_step_s=4 * 3600), 8_000)
    events = [e for e in (decode_event(r.value) for r in records) if isinstance(e, Event)]
    types = Counter(e.event_type for e in events)
    ended = types["factoring.repaid"] + types["factoring.defaulted"]
    assert 0 < types["factoring.defaulted"] / ended < 0.12
    light = [
        e for e in events if isinstance(e.payload, OrderPlaced) and e.payload.industry == "light_industry"
    ]
    assert light
    assert min(e.occurred_at.date() for e in light) >= date(2020, 9, 18)
    assert types["patent.deal_closed"] > types["patent.listed"] / 2


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    config = SimulationConfig(seed=3, scale=0.02, invalid_fraction=0.05)
    first = _take(config, 3_000)
    assert first == _take(config, 3_000)
    other = _take(SimulationConfig(seed=4, scale=0.02, invalid_fraction=0.05), 3_000)
    assert [r.value for r in first] != [r.value for r in other]


def test_valid_events_do_not_depend_on_the_invalid_share() -> None:
    clean = [r.value for r in _take(SimulationConfig(seed=9, scale=0.02), 2_000)]
    mixed = _take(SimulationConfig(seed=9, scale=0.02, invalid_fraction=0.2), 3_000)
    valid = [r.value for r in mixed if r.truth.expected == VALID]
    assert valid[: len(clean)] == clean[: len(valid)]


def test_ground_truth_file_round_trip(tmp_path: Path) -> None:
    records = _take(SimulationConfig(seed=2, scale=0.02, invalid_fraction=0.3), 500)
    path = tmp_path / "truth.jsonl"
    with GroundTruthWriter(path) as writer:
        for record in records:
            writer.write(record.truth)
    assert list(read_ground_truth(path)) == [r.truth for r in records]
    assert [r.truth.seq for r in records] == list(range(1, 501))


@pytest.mark.parametrize(
    "bad", [{"invalid_fraction": 1.0}, {"scale": 0.0}, {"duplicate_fraction": -0.1}, {"clock_step_s": 1}]
)
def test_config_rejects_out_of_range_values(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**bad)  # type: ignore[arg-type]
