"""Invalid records for the simulator: one builder per defect, each naming the dead-letter reason the
pipeline must give it.

Builders read the world's state but never change it (an invalid event changes nothing in the
stream either) and draw only from their own random generator, so the valid events of a seed are the
same whatever share of invalid records is mixed in. Defects that need state (`unknown_company`,
`invalid_transition`) are otherwise valid events, so the stream's rules are the only thing to catch
them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from producers.sim_state import FactoringRequest, IndexedSet, Order
from producers.world import World, rub
from schemas.encode import encode_event
from schemas.events import Event, FactoringRepaid, MemberJoined, OrderCompleted
from schemas.reasons import DeadLetterReason
from schemas.topics import Family

#: Over the contract's 256 KiB limit.
OVERSIZE_BYTES = 256 * 1024 + 4096
#: Nesting depth of the deep-nesting record (far beyond the decoder's limit, small enough to stay cheap).
DEEP_NESTING = 1_000


@dataclass(frozen=True)
class Anomaly:
    """One invalid record: where it goes, its bytes, what a reader can see of it, and the expected reason."""

    topic: str
    key: bytes | None
    value: bytes
    event_id: str | None
    event_type: str | None
    reason: DeadLetterReason
    variant: str


EntityT = TypeVar("EntityT", Order, FactoringRequest)
Builder = Callable[[World, random.Random], Anomaly]


def _template(world: World, rng: random.Random) -> Event:
    """A fresh, valid `order.placed` of an active member (never published as such)."""
    customer = world.members.active.choice(rng)
    payload = world.order_payload(f"ORD-X{rng.getrandbits(40):010x}", rng)
    return world.make_event("order.placed", customer, payload, rng)


def _as_dict(event: Event) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(encode_event(event))
    return loaded


def _dump(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _from(event: Event, value: bytes, reason: DeadLetterReason, variant: str, *, readable: bool = True,
          topic: str | None = None) -> Anomaly:
    return Anomaly(topic=topic or event.family.topic, key=event.company_id.encode(), value=value,
                   event_id=event.event_id if readable else None,
                   event_type=event.event_type if readable else None, reason=reason, variant=variant)


# -- malformed -------------------------------------------------------------------------------------

def bad_utf8(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    value = encode_event(event).replace(b'"title":"', b'"title":"\xff\xfe', 1)
    return _from(event, value, DeadLetterReason.MALFORMED, "bad_utf8", readable=False)


def not_json(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    encoded = encode_event(event)
    return _from(event, encoded[: len(encoded) // 2], DeadLetterReason.MALFORMED, "not_json", readable=False)


def not_object(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    return _from(event, b"[" + encode_event(event) + b"]", DeadLetterReason.MALFORMED, "not_object",
                 readable=False)


def oversize(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    document = _as_dict(event)
    document["payload"]["title"] = "Ж" * (OVERSIZE_BYTES // 2)
    return _from(event, _dump(document), DeadLetterReason.MALFORMED, "oversize", readable=False)


def deep_nesting(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    head, _, _ = encode_event(event).rpartition(b"}")
    value = head + b',"nested":' + b"[" * DEEP_NESTING + b"]" * DEEP_NESTING + b"}"
    return _from(event, value, DeadLetterReason.MALFORMED, "deep_nesting", readable=False)


def duplicate_keys(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    head, _, _ = encode_event(event).rpartition(b"}")
    value = head + b',"source":"other-system"}'
    return _from(event, value, DeadLetterReason.MALFORMED, "duplicate_keys")


# -- unknown type, unsupported version ---------------------------------------------------------------

def unknown_type(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    document = _as_dict(event)
    document["event_type"] = "order.shipped"
    anomaly = _from(event, _dump(document), DeadLetterReason.UNKNOWN_EVENT_TYPE, "unknown_type")
    return replace(anomaly, event_type="order.shipped")


def missing_type(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    document = _as_dict(event)
    del document["event_type"]
    anomaly = _from(event, _dump(document), DeadLetterReason.UNKNOWN_EVENT_TYPE, "missing_type")
    return replace(anomaly, event_type=None)


def future_version(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    document = _as_dict(event)
    document["schema_version"] = 99
    return _from(event, _dump(document), DeadLetterReason.UNSUPPORTED_VERSION, "future_version")


# -- schema violations -------------------------------------------------------------------------------

def _violation(event: Event, document: dict[str, Any], variant: str) -> Anomaly:
    return _from(event, _dump(document), DeadLetterReason.SCHEMA_VIOLATION, variant)


def bad_inn(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    document = _as_dict(event)
    inn = event.company_id
    document["company_id"] = inn[:-1] + str((int(inn[-1]) + 1 + rng.randrange(9)) % 10)
    return _violation(event, document, "bad_inn")


def money_three_decimals(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    head, marker, tail = encode_event(event).partition(b'"budget_rub":')
    _amount, comma, rest = tail.partition(b",")
    thousandths = rng.randrange(100) * 10 + rng.randrange(1, 10)  # a non-zero third decimal
    value = head + marker + f"{rng.randrange(1000, 10**7)}.{thousandths:03d}".encode() + comma + rest
    return _from(event, value, DeadLetterReason.SCHEMA_VIOLATION, "money_three_decimals")


def missing_field(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    document = _as_dict(event)
    del document["payload"]["title"]
    return _violation(event, document, "missing_field")


def extra_field(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    document = _as_dict(event)
    document["priority"] = "high"
    return _violation(event, document, "extra_field")


def wrong_topic(world: World, rng: random.Random) -> Anomaly:
    event = _template(world, rng)
    return _from(event, encode_event(event), DeadLetterReason.SCHEMA_VIOLATION, "wrong_topic",
                 topic=Family.PATENT.topic)


# -- rule 1: unknown company ---------------------------------------------------------------------------

def unknown_company(world: World, rng: random.Random) -> Anomaly:
    template = _template(world, rng)
    outsider = world.outsider_inn(rng)
    event = world.make_event("order.placed", outsider, template.payload, rng)
    return _from(event, encode_event(event), DeadLetterReason.UNKNOWN_COMPANY, "unknown_company")


# -- rule 2: invalid transitions ---------------------------------------------------------------------

def _open_in_state(pool: IndexedSet[EntityT], state: str, rng: random.Random) -> EntityT | None:
    """An open entity in `state`, if a few random picks find one."""
    for _ in range(5):
        if len(pool) == 0:
            return None
        entity = pool.choice(rng)
        if entity.state == state:
            return entity
    return None


def completed_not_accepted(world: World, rng: random.Random) -> Anomaly:
    order = _open_in_state(world.open.orders, "placed", rng)
    if order is not None:
        customer, order_id = order.customer, order.order_id
    else:
        customer, order_id = world.members.active.choice(rng), f"ORD-NEVER-{rng.getrandbits(40):010x}"
    payload = OrderCompleted(order_id=order_id, amount_rub=rub(rng, 50_000, 30_000_000))
    event = world.make_event("order.completed", customer, payload, rng)
    return _from(event, encode_event(event), DeadLetterReason.INVALID_TRANSITION, "completed_not_accepted")


def joined_while_active(world: World, rng: random.Random) -> Anomaly:
    member = world.members.profiles[world.members.active.choice(rng)]
    payload = MemberJoined(name=member.name, kind=member.kind, status=member.status,
                           region_code=member.region_code, sector=member.sector, size=member.size,
                           state_corporation=member.state_corporation)
    event = world.make_event("member.joined", member.company_id, payload, rng)
    return _from(event, encode_event(event), DeadLetterReason.INVALID_TRANSITION, "joined_while_active")


def repaid_not_funded(world: World, rng: random.Random) -> Anomaly:
    request = _open_in_state(world.open.factoring, "requested", rng)
    if request is not None:
        supplier, request_id, amount = request.supplier, request.request_id, request.invoice
    else:
        supplier = world.members.active.choice(rng)
        request_id, amount = f"FCT-NEVER-{rng.getrandbits(40):010x}", rub(rng, 100_000, 50_000_000)
    event = world.make_event("factoring.repaid", supplier,
                             FactoringRepaid(request_id=request_id, amount_rub=amount), rng)
    return _from(event, encode_event(event), DeadLetterReason.INVALID_TRANSITION, "repaid_not_funded")


BUILDERS: dict[DeadLetterReason, tuple[Builder, ...]] = {
    DeadLetterReason.MALFORMED: (bad_utf8, not_json, not_object, oversize, deep_nesting, duplicate_keys),
    DeadLetterReason.UNKNOWN_EVENT_TYPE: (unknown_type, missing_type),
    DeadLetterReason.UNSUPPORTED_VERSION: (future_version,),
    DeadLetterReason.SCHEMA_VIOLATION: (
        bad_inn, money_three_decimals, missing_field, extra_field, wrong_topic,
    ),
    DeadLetterReason.UNKNOWN_COMPANY: (unknown_company,),
    DeadLetterReason.INVALID_TRANSITION: (completed_not_accepted, joined_while_active, repaid_not_funded),
}


class AnomalySchedule:
    """Which defect comes next: the reasons in turn (reshuffled every round, so every reason gets an
    equal share), and within a reason its variants in turn."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._round: list[DeadLetterReason] = []
        self._variant_turn = dict.fromkeys(BUILDERS, 0)

    def next_builder(self) -> Builder:
        if not self._round:
            self._round = list(BUILDERS)
            self._rng.shuffle(self._round)
        reason = self._round.pop()
        variants = BUILDERS[reason]
        turn = self._variant_turn[reason]
        self._variant_turn[reason] = turn + 1
        return variants[turn % len(variants)]
