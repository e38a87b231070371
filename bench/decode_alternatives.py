"""Contract v1 written with the alternatives to msgspec, for `bench_decode.py` only.

- pydantic v2: one model per event type (envelope + payload), a union discriminated by
  `event_type`, validated with `TypeAdapter.validate_json` (strict mode: no str->int coercion).
- faust-streaming: `faust.Record(validation=True, coerce=True)` classes with faust's field
  descriptors for lengths and decimals; enum, pattern, INN and date rules in `__post_init__`; the
  JSON parsed by `json.loads(parse_float=Decimal)` (see `faust_decode`).

Both check the same rules as `schemas.decode_event` except where the library cannot: neither has
duplicate-key detection nor a size or nesting guard, pydantic accepts money given as a JSON string
(its Decimal validator takes both), faust does not forbid unknown payload fields. The bench prints
which of a set of invalid events each candidate rejects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

import faust
from faust.models.fields import DecimalField, FloatField, IntegerField, StringField
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)
from pydantic import create_model as create_pydantic_model

from schemas import fields as rules
from schemas.inn import is_valid_inn
from schemas.registry import DEFAULT_REGISTRY


def _ecma(pattern: str) -> str:
    return pattern.removesuffix("\\Z") + "$"


def _inn(value: str) -> str:
    if not is_valid_inn(value):
        raise ValueError("INN check digits do not match")
    return value


# --- pydantic v2 ----------------------------------------------------------------------------------

STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
PInn = Annotated[str, StringConstraints(pattern=_ecma(rules.INN_PATTERN)), AfterValidator(_inn)]
PId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
PText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
PName = Annotated[str, StringConstraints(min_length=1, max_length=300)]
PRegion = Annotated[str, StringConstraints(pattern=r"^(0[1-9]|[1-9][0-9])$")]
PMoney = Annotated[Decimal, Field(ge=0, le=rules.MAX_MONEY, decimal_places=2, strict=False)]
PPositiveMoney = Annotated[Decimal, Field(gt=0, le=rules.MAX_MONEY, decimal_places=2, strict=False)]


class PMemberJoined(BaseModel):
    model_config = STRICT
    name: PName
    kind: rules.MemberKind
    status: rules.MemberStatus
    region_code: PRegion
    sector: rules.Sector
    size: rules.CompanySize
    state_corporation: rules.StateCorporation | None


class PMemberUpdated(BaseModel):
    model_config = STRICT
    name: PName | None = None
    kind: rules.MemberKind | None = None
    status: rules.MemberStatus | None = None
    region_code: PRegion | None = None
    sector: rules.Sector | None = None
    size: rules.CompanySize | None = None
    state_corporation: rules.StateCorporation | None = None


class PMemberLeft(BaseModel):
    model_config = STRICT
    reason: PText | None = None


class POrderPlaced(BaseModel):
    model_config = STRICT
    order_id: PId
    industry: rules.OrderIndustry
    title: PText
    quantity: Annotated[int, Field(ge=1, le=2**63 - 1)]
    budget_rub: PMoney
    deadline: Annotated[date, Field(strict=False)]


class POrderAccepted(BaseModel):
    model_config = STRICT
    order_id: PId
    manufacturer_id: PInn


class POrderCompleted(BaseModel):
    model_config = STRICT
    order_id: PId
    amount_rub: PMoney


class POrderCancelled(BaseModel):
    model_config = STRICT
    order_id: PId
    reason: PText | None = None


class PPatentListed(BaseModel):
    model_config = STRICT
    patent_id: PId
    kind: rules.PatentKind
    title: PText
    offer: rules.PatentOffer
    price_rub: PMoney


class PPatentDealClosed(BaseModel):
    model_config = STRICT
    patent_id: PId
    buyer_id: PInn
    deal: rules.PatentDeal
    amount_rub: PMoney


class PPatentWithdrawn(BaseModel):
    model_config = STRICT
    patent_id: PId


class PFactoringRequested(BaseModel):
    model_config = STRICT
    request_id: PId
    debtor_id: PInn
    invoice_amount_rub: PPositiveMoney
    due_date: Annotated[date, Field(strict=False)]


class PFactoringFunded(BaseModel):
    model_config = STRICT
    request_id: PId
    advance_rub: PPositiveMoney
    fee_rate: Annotated[float, Field(gt=0, lt=1)]


class PFactoringRepaid(BaseModel):
    model_config = STRICT
    request_id: PId
    amount_rub: PMoney


class PFactoringDefaulted(BaseModel):
    model_config = STRICT
    request_id: PId
    outstanding_rub: PMoney


_PYDANTIC_PAYLOADS: dict[str, type[BaseModel]] = {
    "member.joined": PMemberJoined,
    "member.updated": PMemberUpdated,
    "member.left": PMemberLeft,
    "order.placed": POrderPlaced,
    "order.accepted": POrderAccepted,
    "order.completed": POrderCompleted,
    "order.cancelled": POrderCancelled,
    "patent.listed": PPatentListed,
    "patent.deal_closed": PPatentDealClosed,
    "patent.withdrawn": PPatentWithdrawn,
    "factoring.requested": PFactoringRequested,
    "factoring.funded": PFactoringFunded,
    "factoring.repaid": PFactoringRepaid,
    "factoring.defaulted": PFactoringDefaulted,
}


def _pydantic_event(event_type: str, payload: type[BaseModel]) -> type[BaseModel]:
    event_model: type[BaseModel] = create_pydantic_model(
        payload.__name__ + "Event",
        __config__=STRICT,
        event_id=(Annotated[str, StringConstraints(pattern=_ecma(rules.UUID_PATTERN))], ...),
        event_type=(Literal[event_type], ...),  # type: ignore[valid-type]
        schema_version=(Literal[1], ...),
        occurred_at=(Annotated[AwareDatetime, Field(strict=False)], ...),
        source=(Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.-]{1,64}$")], ...),
        company_id=(PInn, ...),
        payload=(payload, ...),
        trace_id=(Annotated[str, StringConstraints(max_length=64)] | None, None),
    )
    return event_model


_PYDANTIC_EVENTS = tuple(_pydantic_event(t, p) for t, p in _PYDANTIC_PAYLOADS.items())
PYDANTIC_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[_PYDANTIC_EVENTS], Field(discriminator="event_type")]  # type: ignore[valid-type]  # noqa: UP007
)


def pydantic_decode(raw: bytes) -> object:
    """Validate one event with pydantic v2; raises pydantic.ValidationError."""
    event = PYDANTIC_ADAPTER.validate_json(raw)
    if event.event_type == "member.updated" and not event.payload.model_fields_set:
        raise ValueError("member.updated must change at least one field")
    return event


# --- faust Records ----------------------------------------------------------------------------------

_ENUMS: dict[str, frozenset[str]] = {
    name: frozenset(getattr(rules, alias).__args__)
    for name, alias in {
        "kind_member": "MemberKind",
        "status": "MemberStatus",
        "sector": "Sector",
        "size": "CompanySize",
        "industry": "OrderIndustry",
        "kind_patent": "PatentKind",
        "offer": "PatentOffer",
        "deal": "PatentDeal",
    }.items()
}
_UUID = re.compile(rules.UUID_PATTERN)
_RFC3339 = re.compile(rules.RFC3339_PATTERN)
_SOURCE = re.compile(r"^[a-z0-9_.-]{1,64}\Z")
_REGION = re.compile(r"^(0[1-9]|[1-9][0-9])\Z")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _money(value: Decimal, *, positive: bool = False) -> None:
    _require(value > 0 if positive else value >= 0, "money out of range")
    _require(value <= rules.MAX_MONEY, "money over 10^13")


class FEnvelope(faust.Record, validation=True, coerce=True, serializer="json"):
    event_id: str
    event_type: str = StringField(min_length=1, max_length=64)
    schema_version: int = IntegerField(min_value=1)
    occurred_at: str
    source: str
    company_id: str
    payload: dict[str, Any]
    trace_id: str | None = StringField(required=False, max_length=64, default=None)

    def __post_init__(self) -> None:
        _require(bool(_UUID.search(self.event_id)), "event_id")
        _require(bool(_RFC3339.search(self.occurred_at)), "occurred_at")
        datetime.fromisoformat(self.occurred_at.upper())
        _require(bool(_SOURCE.search(self.source)), "source")
        _require(is_valid_inn(self.company_id), "company_id")


class FMemberJoined(faust.Record, validation=True, coerce=True):
    name: str = StringField(min_length=1, max_length=300)
    kind: str
    status: str
    region_code: str
    sector: str
    size: str
    state_corporation: str | None

    def __post_init__(self) -> None:
        _require(self.kind in _ENUMS["kind_member"] and self.status in _ENUMS["status"], "enum")
        _require(self.sector in _ENUMS["sector"] and self.size in _ENUMS["size"], "enum")
        _require(self.state_corporation in (None, "rostec", "rosatom", "roscosmos"), "enum")
        _require(bool(_REGION.search(self.region_code)), "region_code")


class FMemberUpdated(faust.Record, validation=True, coerce=True):
    name: str | None = StringField(required=False, min_length=1, max_length=300, default=None)
    kind: str | None = None
    status: str | None = None
    region_code: str | None = None
    sector: str | None = None
    size: str | None = None
    state_corporation: str | None = None

    def __post_init__(self) -> None:
        _require(any(v is not None for v in self.asdict().values()), "empty member.updated")


class FMemberLeft(faust.Record, validation=True, coerce=True):
    reason: str | None = StringField(required=False, min_length=1, max_length=500, default=None)


class FOrderPlaced(faust.Record, validation=True, coerce=True):
    order_id: str = StringField(min_length=1, max_length=64)
    industry: str
    title: str = StringField(min_length=1, max_length=500)
    quantity: int = IntegerField(min_value=1)
    budget_rub: Decimal = DecimalField(max_decimal_places=2)
    deadline: str

    def __post_init__(self) -> None:
        _require(self.industry in _ENUMS["industry"], "industry")
        _money(self.budget_rub)
        date.fromisoformat(self.deadline)


class FOrderAccepted(faust.Record, validation=True, coerce=True):
    order_id: str = StringField(min_length=1, max_length=64)
    manufacturer_id: str

    def __post_init__(self) -> None:
        _require(is_valid_inn(self.manufacturer_id), "manufacturer_id")


class FOrderCompleted(faust.Record, validation=True, coerce=True):
    order_id: str = StringField(min_length=1, max_length=64)
    amount_rub: Decimal = DecimalField(max_decimal_places=2)

    def __post_init__(self) -> None:
        _money(self.amount_rub)


class FOrderCancelled(faust.Record, validation=True, coerce=True):
    order_id: str = StringField(min_length=1, max_length=64)
    reason: str | None = StringField(required=False, min_length=1, max_length=500, default=None)


class FPatentListed(faust.Record, validation=True, coerce=True):
    patent_id: str = StringField(min_length=1, max_length=64)
    kind: str
    title: str = StringField(min_length=1, max_length=500)
    offer: str
    price_rub: Decimal = DecimalField(max_decimal_places=2)

    def __post_init__(self) -> None:
        _require(self.kind in _ENUMS["kind_patent"] and self.offer in _ENUMS["offer"], "enum")
        _money(self.price_rub)


class FPatentDealClosed(faust.Record, validation=True, coerce=True):
    patent_id: str = StringField(min_length=1, max_length=64)
    buyer_id: str
    deal: str
    amount_rub: Decimal = DecimalField(max_decimal_places=2)

    def __post_init__(self) -> None:
        _require(is_valid_inn(self.buyer_id) and self.deal in _ENUMS["deal"], "buyer_id/deal")
        _money(self.amount_rub)


class FPatentWithdrawn(faust.Record, validation=True, coerce=True):
    patent_id: str = StringField(min_length=1, max_length=64)


class FFactoringRequested(faust.Record, validation=True, coerce=True):
    request_id: str = StringField(min_length=1, max_length=64)
    debtor_id: str
    invoice_amount_rub: Decimal = DecimalField(max_decimal_places=2)
    due_date: str

    def __post_init__(self) -> None:
        _require(is_valid_inn(self.debtor_id), "debtor_id")
        _money(self.invoice_amount_rub, positive=True)
        date.fromisoformat(self.due_date)


class FFactoringFunded(faust.Record, validation=True, coerce=True):
    request_id: str = StringField(min_length=1, max_length=64)
    advance_rub: Decimal = DecimalField(max_decimal_places=2)
    fee_rate: float = FloatField()

    def __post_init__(self) -> None:
        _money(self.advance_rub, positive=True)
        _require(0 < self.fee_rate < 1, "fee_rate")


class FFactoringRepaid(faust.Record, validation=True, coerce=True):
    request_id: str = StringField(min_length=1, max_length=64)
    amount_rub: Decimal = DecimalField(max_decimal_places=2)

    def __post_init__(self) -> None:
        _money(self.amount_rub)


class FFactoringDefaulted(faust.Record, validation=True, coerce=True):
    request_id: str = StringField(min_length=1, max_length=64)
    outstanding_rub: Decimal = DecimalField(max_decimal_places=2)

    def __post_init__(self) -> None:
        _money(self.outstanding_rub)


_FAUST_PAYLOADS: dict[tuple[str, int], type[faust.Record]] = {
    ("member.joined", 1): FMemberJoined,
    ("member.updated", 1): FMemberUpdated,
    ("member.left", 1): FMemberLeft,
    ("order.placed", 1): FOrderPlaced,
    ("order.accepted", 1): FOrderAccepted,
    ("order.completed", 1): FOrderCompleted,
    ("order.cancelled", 1): FOrderCancelled,
    ("patent.listed", 1): FPatentListed,
    ("patent.deal_closed", 1): FPatentDealClosed,
    ("patent.withdrawn", 1): FPatentWithdrawn,
    ("factoring.requested", 1): FFactoringRequested,
    ("factoring.funded", 1): FFactoringFunded,
    ("factoring.repaid", 1): FFactoringRepaid,
    ("factoring.defaulted", 1): FFactoringDefaulted,
}
assert {(s.event_type, s.schema_version) for s in DEFAULT_REGISTRY.all_specs()} == set(_FAUST_PAYLOADS)
assert set(_PYDANTIC_PAYLOADS) == {s.event_type for s in DEFAULT_REGISTRY.all_specs()}


def faust_decode(raw: bytes) -> object:
    """Validate one event with faust Records: parse, then build the envelope and payload Records.

    Not `FEnvelope.loads`: faust's JSON codec reads money as float, and `Decimal(2168651.29)` fails
    `max_decimal_places=2`; the stdlib parser with `parse_float=Decimal` keeps money exact.
    """
    envelope = FEnvelope.from_data(json.loads(raw, parse_float=Decimal))
    payload_type = _FAUST_PAYLOADS[envelope.event_type, envelope.schema_version]
    return envelope, payload_type(**envelope.payload)


CANDIDATES: dict[str, Callable[[bytes], object]] = {
    "pydantic_v2": pydantic_decode,
    "faust_record": faust_decode,
}
