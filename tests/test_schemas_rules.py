"""Every rule of contract v1, one case each: the envelope's and each payload's, rejected and accepted."""

from __future__ import annotations

from decimal import Decimal

import pytest
from schemas_documents import (
    UNKNOWN_TYPE,
    UNSUPPORTED,
    VIOLATION,
    Mutation,
    assert_failure,
    decode_mutated,
    remover,
    setter,
)

from schemas.events import Event
from schemas.reasons import DeadLetterReason

# --- envelope rules -------------------------------------------------------------------------------

ENVELOPE_CASES: list[tuple[str, Mutation, DeadLetterReason, str]] = [
    ("event_id not a uuid", setter("event_id", "not-a-uuid"), VIOLATION, "$.event_id: not a UUID"),
    ("event_id without hyphens", setter("event_id", "0" * 32), VIOLATION, "$.event_id"),
    (
        "event_id with braces",
        setter("event_id", "{00000000-0000-4000-8000-000000000000}"),
        VIOLATION,
        "$.event_id",
    ),
    ("event_id a number", setter("event_id", 5), VIOLATION, "$.event_id: expected `str`, got `int`"),
    ("event_id missing", remover("event_id"), VIOLATION, "$.event_id: required field missing"),
    ("event_type missing", remover("event_type"), UNKNOWN_TYPE, "$.event_type: missing"),
    ("event_type unknown", setter("event_type", "order.shipped"), UNKNOWN_TYPE, "'order.shipped'"),
    ("event_type a number", setter("event_type", 7), UNKNOWN_TYPE, "expected a string, got number"),
    ("event_type null", setter("event_type", None), UNKNOWN_TYPE, "got null"),
    ("version 2", setter("schema_version", 2), UNSUPPORTED, "$.schema_version: 2 is not a supported version"),
    ("huge version", setter("schema_version", 10**40), UNSUPPORTED, "$.schema_version"),
    ("version 0", setter("schema_version", 0), VIOLATION, "$.schema_version: expected `int` >= 1"),
    ("version -1", setter("schema_version", -1), VIOLATION, "$.schema_version"),
    (
        "version string",
        setter("schema_version", "1"),
        VIOLATION,
        "$.schema_version: expected `int`, got `str`",
    ),
    ("version float", setter("schema_version", 1.5), VIOLATION, "$.schema_version"),
    ("version bool", setter("schema_version", True), VIOLATION, "$.schema_version"),
    ("version missing", remover("schema_version"), VIOLATION, "$.schema_version: required field missing"),
    ("naive time", setter("occurred_at", "2020-09-24T10:15:00"), VIOLATION, "$.occurred_at: not an RFC 3339"),
    ("date only", setter("occurred_at", "2020-09-24"), VIOLATION, "$.occurred_at"),
    ("offset without colon", setter("occurred_at", "2020-09-24T10:15:00+0300"), VIOLATION, "$.occurred_at"),
    (
        "impossible date",
        setter("occurred_at", "2020-02-30T10:15:00Z"),
        VIOLATION,
        "$.occurred_at: not an RFC 3339",
    ),
    ("hour 24", setter("occurred_at", "2020-02-03T24:00:00Z"), VIOLATION, "$.occurred_at: not an RFC 3339"),
    ("trailing newline", setter("occurred_at", "2020-02-03T10:00:00Z\n"), VIOLATION, "$.occurred_at"),
    ("epoch number", setter("occurred_at", 1600931700), VIOLATION, "$.occurred_at"),
    ("source empty", setter("source", ""), VIOLATION, "$.source"),
    ("source upper case", setter("source", "CRM"), VIOLATION, "$.source"),
    ("source 65 chars", setter("source", "a" * 65), VIOLATION, "$.source"),
    ("source with space", setter("source", "my crm"), VIOLATION, "$.source"),
    (
        "company bad check digit",
        setter("company_id", "7707083894"),
        VIOLATION,
        "$.company_id: INN check digits",
    ),
    ("company 11 digits", setter("company_id", "77070838931"), VIOLATION, "$.company_id: not an INN"),
    ("company letters", setter("company_id", "77070838a3"), VIOLATION, "$.company_id: not an INN"),
    ("company a number", setter("company_id", 7707083893), VIOLATION, "$.company_id: expected `str`"),
    ("company 12 bad", setter("company_id", "500100732258"), VIOLATION, "$.company_id: INN check digits"),
    ("trace 65 chars", setter("trace_id", "t" * 65), VIOLATION, "$.trace_id"),
    ("trace a number", setter("trace_id", 5), VIOLATION, "$.trace_id"),
    ("unknown field", setter("tenant", "x"), VIOLATION, "$.tenant: unknown field"),
    ("payload missing", remover("payload"), VIOLATION, "$.payload: required field missing"),
    ("payload an array", setter("payload", []), VIOLATION, "$.payload: expected `object`, got `array`"),
    ("payload null", setter("payload", None), VIOLATION, "$.payload: expected `object`, got `null`"),
]


@pytest.mark.parametrize(
    ("mutate", "reason", "detail"),
    [case[1:] for case in ENVELOPE_CASES],
    ids=[case[0] for case in ENVELOPE_CASES],
)
def test_envelope_rule(mutate: Mutation, reason: DeadLetterReason, detail: str) -> None:
    assert_failure(decode_mutated("order.placed", mutate), reason, detail)


ENVELOPE_ACCEPTED: list[tuple[str, Mutation]] = [
    ("upper-case uuid", setter("event_id", "0B6F1C3E-8A6B-4B8E-9A43-2F0F1D9E7C11")),
    ("utc Z", setter("occurred_at", "2020-09-24T07:15:00Z")),
    ("lower-case t and z", setter("occurred_at", "2020-09-24t07:15:00z")),
    ("fractional seconds", setter("occurred_at", "2020-09-24T07:15:00.123456789-05:30")),
    ("space separator", setter("occurred_at", "2020-09-24 07:15:00+00:00")),
    ("source 64 chars", setter("source", "a" * 64)),
    ("source charset", setter("source", "erp-1.c_2")),
    ("sole proprietor", setter("company_id", "500100732259")),
    ("trace 64 chars", setter("trace_id", "t" * 64)),
    ("trace null", setter("trace_id", None)),
]


@pytest.mark.parametrize("mutate", [c[1] for c in ENVELOPE_ACCEPTED], ids=[c[0] for c in ENVELOPE_ACCEPTED])
def test_envelope_accepts(mutate: Mutation) -> None:
    assert isinstance(decode_mutated("order.placed", mutate), Event)


# --- payload rules --------------------------------------------------------------------------------

PAYLOAD_CASES: list[tuple[str, str, Mutation, str]] = [
    (
        "order.placed",
        "money as string",
        setter("payload.budget_rub", "100.00"),
        "$.payload.budget_rub: money must be a JSON number",
    ),
    (
        "order.placed",
        "money 3 decimals",
        setter("payload.budget_rub", Decimal("1.005")),
        "$.payload.budget_rub: more than 2 decimal places",
    ),
    (
        "order.placed",
        "money tiny",
        setter("payload.budget_rub", Decimal("1E-30")),
        "$.payload.budget_rub: more than 2 decimal places",
    ),
    (
        "order.placed",
        "money negative",
        setter("payload.budget_rub", Decimal("-1")),
        "$.payload.budget_rub: must not be negative",
    ),
    (
        "order.placed",
        "money over 10^13",
        setter("payload.budget_rub", Decimal("10000000000000.01")),
        "$.payload.budget_rub: more than 10^13",
    ),
    ("order.placed", "money bool", setter("payload.budget_rub", True), "$.payload.budget_rub"),
    ("order.placed", "money null", setter("payload.budget_rub", None), "$.payload.budget_rub"),
    ("order.placed", "quantity 0", setter("payload.quantity", 0), "$.payload.quantity: expected `int` >= 1"),
    ("order.placed", "quantity fraction", setter("payload.quantity", 1.5), "$.payload.quantity"),
    ("order.placed", "quantity string", setter("payload.quantity", "5"), "$.payload.quantity"),
    ("order.placed", "quantity too big", setter("payload.quantity", 2**63), "$.payload.quantity"),
    (
        "order.placed",
        "deadline format",
        setter("payload.deadline", "2020-1-5"),
        "$.payload.deadline: not a date YYYY-MM-DD",
    ),
    (
        "order.placed",
        "deadline impossible",
        setter("payload.deadline", "2020-02-30"),
        "$.payload.deadline: not a date",
    ),
    (
        "order.placed",
        "deadline datetime",
        setter("payload.deadline", "2020-02-03T00:00:00Z"),
        "$.payload.deadline",
    ),
    (
        "order.placed",
        "industry not in enum",
        setter("payload.industry", "aviation"),
        "$.payload.industry: invalid enum value 'aviation'",
    ),
    (
        "order.placed",
        "title empty",
        setter("payload.title", ""),
        "$.payload.title: expected `str` of length >= 1",
    ),
    (
        "order.placed",
        "title 501",
        setter("payload.title", "x" * 501),
        "$.payload.title: expected `str` of length <= 500",
    ),
    ("order.placed", "order_id 65", setter("payload.order_id", "o" * 65), "$.payload.order_id"),
    ("order.placed", "order_id empty", setter("payload.order_id", ""), "$.payload.order_id"),
    ("order.placed", "missing field", remover("payload.title"), "$.payload.title: required field missing"),
    ("order.placed", "extra field", setter("payload.color", "red"), "$.payload.color: unknown field"),
    (
        "order.accepted",
        "manufacturer bad INN",
        setter("payload.manufacturer_id", "7707083894"),
        "$.payload.manufacturer_id: INN check digits",
    ),
    (
        "order.accepted",
        "manufacturer too short",
        setter("payload.manufacturer_id", "123"),
        "$.payload.manufacturer_id: expected `str` of length >= 10",
    ),
    (
        "order.accepted",
        "manufacturer not digits",
        setter("payload.manufacturer_id", "abcdefghij"),
        "$.payload.manufacturer_id: not an INN",
    ),
    (
        "order.accepted",
        "manufacturer 11 digits",
        setter("payload.manufacturer_id", "77070838931"),
        "$.payload.manufacturer_id: not an INN",
    ),
    (
        "order.completed",
        "amount string",
        setter("payload.amount_rub", "1"),
        "$.payload.amount_rub: money must be a JSON number",
    ),
    ("order.cancelled", "reason empty", setter("payload.reason", ""), "$.payload.reason"),
    ("patent.listed", "kind not in enum", setter("payload.kind", "software"), "$.payload.kind"),
    ("patent.listed", "offer not in enum", setter("payload.offer", "rent"), "$.payload.offer"),
    (
        "patent.listed",
        "price negative",
        setter("payload.price_rub", -5),
        "$.payload.price_rub: must not be negative",
    ),
    (
        "patent.deal_closed",
        "buyer bad INN",
        setter("payload.buyer_id", "500100732258"),
        "$.payload.buyer_id: INN check digits",
    ),
    ("patent.deal_closed", "deal both", setter("payload.deal", "both"), "$.payload.deal"),
    (
        "patent.withdrawn",
        "patent_id missing",
        remover("payload.patent_id"),
        "$.payload.patent_id: required field missing",
    ),
    (
        "factoring.requested",
        "invoice zero",
        setter("payload.invoice_amount_rub", 0),
        "$.payload.invoice_amount_rub: must be greater than 0",
    ),
    (
        "factoring.requested",
        "debtor bad INN",
        setter("payload.debtor_id", "7736207544"),
        "$.payload.debtor_id: INN check digits",
    ),
    ("factoring.requested", "due date bad", setter("payload.due_date", "30.11.2020"), "$.payload.due_date"),
    (
        "factoring.funded",
        "advance zero",
        setter("payload.advance_rub", 0),
        "$.payload.advance_rub: must be greater than 0",
    ),
    (
        "factoring.funded",
        "fee rate 0",
        setter("payload.fee_rate", 0),
        "$.payload.fee_rate: expected `float` > 0.0",
    ),
    (
        "factoring.funded",
        "fee rate 1",
        setter("payload.fee_rate", 1),
        "$.payload.fee_rate: expected `float` < 1.0",
    ),
    ("factoring.funded", "fee rate string", setter("payload.fee_rate", "0.1"), "$.payload.fee_rate"),
    (
        "factoring.repaid",
        "amount 3 decimals",
        setter("payload.amount_rub", Decimal("0.001")),
        "more than 2 decimal places",
    ),
    (
        "factoring.defaulted",
        "outstanding string",
        setter("payload.outstanding_rub", "5"),
        "money must be a JSON number",
    ),
    (
        "member.joined",
        "name 301",
        setter("payload.name", "n" * 301),
        "$.payload.name: expected `str` of length <= 300",
    ),
    ("member.joined", "kind not in enum", setter("payload.kind", "ngo"), "$.payload.kind"),
    ("member.joined", "status not in enum", setter("payload.status", "guest"), "$.payload.status"),
    ("member.joined", "region 00", setter("payload.region_code", "00"), "$.payload.region_code"),
    ("member.joined", "region 1 digit", setter("payload.region_code", "7"), "$.payload.region_code"),
    ("member.joined", "region 3 digits", setter("payload.region_code", "177"), "$.payload.region_code"),
    ("member.joined", "region number", setter("payload.region_code", 77), "$.payload.region_code"),
    ("member.joined", "sector not in enum", setter("payload.sector", "mining"), "$.payload.sector"),
    ("member.joined", "size not in enum", setter("payload.size", "huge"), "$.payload.size"),
    (
        "member.joined",
        "state corporation unknown",
        setter("payload.state_corporation", "gazprom"),
        "$.payload.state_corporation",
    ),
    (
        "member.joined",
        "state corporation missing",
        remover("payload.state_corporation"),
        "$.payload.state_corporation: required field missing",
    ),
    (
        "member.updated",
        "empty subset",
        setter("payload", {}),
        "$.payload: member.updated must change at least one field",
    ),
    (
        "member.updated",
        "only nulls",
        setter("payload", {"name": None, "size": None}),
        "must change at least one field",
    ),
    ("member.updated", "bad region", setter("payload", {"region_code": "0"}), "$.payload.region_code"),
    (
        "member.updated",
        "unknown field",
        setter("payload", {"reason": "x"}),
        "$.payload.reason: unknown field",
    ),
    ("member.left", "reason too long", setter("payload.reason", "r" * 501), "$.payload.reason"),
]


@pytest.mark.parametrize(
    ("event_type", "mutate", "detail"),
    [(c[0], c[2], c[3]) for c in PAYLOAD_CASES],
    ids=[f"{c[0]}: {c[1]}" for c in PAYLOAD_CASES],
)
def test_payload_rule(event_type: str, mutate: Mutation, detail: str) -> None:
    assert_failure(decode_mutated(event_type, mutate), VIOLATION, detail)


PAYLOAD_ACCEPTED: list[tuple[str, str, Mutation]] = [
    ("order.placed", "money zero", setter("payload.budget_rub", 0)),
    ("order.placed", "money exactly 10^13", setter("payload.budget_rub", 10**13)),
    ("order.placed", "money 1 decimal", setter("payload.budget_rub", Decimal("0.5"))),
    ("order.placed", "title 500", setter("payload.title", "x" * 500)),
    ("order.placed", "order_id 64", setter("payload.order_id", "o" * 64)),
    ("order.placed", "quantity 1", setter("payload.quantity", 1)),
    ("order.placed", "leap day", setter("payload.deadline", "2020-02-29")),
    ("order.cancelled", "reason null", setter("payload.reason", None)),
    ("order.cancelled", "reason absent", remover("payload.reason")),
    ("member.left", "no reason", setter("payload", {})),
    ("member.joined", "name 300", setter("payload.name", "n" * 300)),
    ("member.joined", "region 01", setter("payload.region_code", "01")),
    ("member.joined", "region 99", setter("payload.region_code", "99")),
    ("member.joined", "state corporation rosatom", setter("payload.state_corporation", "rosatom")),
    ("member.updated", "one field", setter("payload", {"sector": "it"})),
    (
        "member.updated",
        "nulls beside a change",
        setter("payload", {"name": None, "status": "regional_partner"}),
    ),
    ("factoring.funded", "fee rate small", setter("payload.fee_rate", 0.0001)),
    ("factoring.requested", "sole proprietor debtor", setter("payload.debtor_id", "500100732259")),
]


@pytest.mark.parametrize(
    ("event_type", "mutate"),
    [(c[0], c[2]) for c in PAYLOAD_ACCEPTED],
    ids=[f"{c[0]}: {c[1]}" for c in PAYLOAD_ACCEPTED],
)
def test_payload_accepts(event_type: str, mutate: Mutation) -> None:
    result = decode_mutated(event_type, mutate)
    assert isinstance(result, Event), result
