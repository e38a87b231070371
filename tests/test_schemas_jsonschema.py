"""The exported JSON Schema documents: up to date with the models, and agreeing with decode_event."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mic_pipeline.cli import main
from schemas.decode import decode_event
from schemas.encode import encode_event
from schemas.events import Event
from schemas.examples import example_events
from schemas.export import DEADLETTER_FILE, DEFAULT_DIRECTORY, ENVELOPE_FILE, drift, export, schema_documents

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def _validator(name: str) -> jsonschema.Draft202012Validator:
    document = json.loads((DEFAULT_DIRECTORY / name).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document, format_checker=FORMATS)


def _event_doc(event: Event) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(encode_event(event))
    return loaded


def test_committed_documents_match_the_models() -> None:
    assert drift() == [], "JSON Schema files are out of date: run `mic-pipeline schemas export`"


def test_one_document_per_type_plus_envelope_and_dead_letter() -> None:
    names = set(schema_documents())
    assert len(names) == 16 and {ENVELOPE_FILE, DEADLETTER_FILE} <= names


@pytest.mark.parametrize("event", example_events(), ids=lambda e: e.event_type)
def test_examples_validate_against_their_document_and_the_envelope(event: Event) -> None:
    document = _event_doc(event)
    _validator(f"{event.event_type}.v1.schema.json").validate(document)
    _validator(ENVELOPE_FILE).validate(document)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            doc = doc[part]
        doc[last] = value

    return mutate


# Violations JSON Schema can express: the schema and decode_event must both reject them.
REJECTED: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("order.placed", "money 3 decimals", _set("payload.budget_rub", 1.005)),
    ("order.placed", "money as string", _set("payload.budget_rub", "100")),
    ("order.placed", "money over 10^13", _set("payload.budget_rub", 10**13 + 1)),
    ("order.placed", "money negative", _set("payload.budget_rub", -1)),
    ("factoring.requested", "invoice zero", _set("payload.invoice_amount_rub", 0)),
    ("factoring.funded", "fee rate 1", _set("payload.fee_rate", 1)),
    ("order.placed", "naive time", _set("occurred_at", "2020-09-24T10:15:00")),
    ("order.placed", "short INN", _set("company_id", "123")),
    ("order.placed", "uuid without hyphens", _set("event_id", "0" * 32)),
    ("order.placed", "unknown envelope field", _set("tenant", "x")),
    ("order.placed", "unknown payload field", _set("payload.color", "red")),
    ("order.placed", "wrong type for the document", _set("event_type", "order.accepted")),
    ("order.placed", "version 2", _set("schema_version", 2)),
    ("order.placed", "deadline not a date", _set("payload.deadline", "2020-02-30")),
    ("member.joined", "region 00", _set("payload.region_code", "00")),
    ("member.joined", "state corporation missing", lambda d: d["payload"].pop("state_corporation")),
    ("member.updated", "empty subset", _set("payload", {})),
    ("member.updated", "only nulls", _set("payload", {"name": None})),
    # clarification of 2026-11-30: years 2000-2099, no control characters
    ("order.placed", "deadline 1999-12-31", _set("payload.deadline", "1999-12-31")),
    ("order.placed", "deadline 2100-01-01", _set("payload.deadline", "2100-01-01")),
    ("factoring.requested", "due date 9999-12-31", _set("payload.due_date", "9999-12-31")),
    ("factoring.requested", "due date 0001-01-01", _set("payload.due_date", "0001-01-01")),
    ("member.joined", "occurred_at 1999", _set("occurred_at", "1999-12-30T12:00:00Z")),
    ("member.joined", "occurred_at 2100", _set("occurred_at", "2100-01-02T00:00:00Z")),
    ("member.joined", "occurred_at 9999 at -05:00", _set("occurred_at", "9999-12-31T23:59:59-05:00")),
    ("member.joined", "occurred_at year 1", _set("occurred_at", "0001-01-01T00:00:00Z")),
    ("order.placed", "NUL in title", _set("payload.title", "A\u0000B")),
    ("order.placed", "ESC in order_id", _set("payload.order_id", "\u001b[31m")),
    ("order.placed", "DEL in trace_id", _set("trace_id", "t\u007f")),
    ("member.joined", "unit separator in name", _set("payload.name", "a\u001fb")),
    ("member.left", "backspace in reason", _set("payload.reason", "a\bb")),
    ("patent.listed", "form feed in patent_id", _set("payload.patent_id", "RU\f1")),
    ("factoring.funded", "vertical tab in request_id", _set("payload.request_id", "FR\u000b1")),
]

# Values both must accept: the boundaries, offsets that move a local date into the range, TAB/LF/CR.
ACCEPTED: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("member.joined", "first second", _set("occurred_at", "2000-01-01T00:00:00Z")),
    ("member.joined", "last second", _set("occurred_at", "2099-12-31T23:59:59Z")),
    ("member.joined", "1999 local, 2000 in UTC", _set("occurred_at", "1999-12-31T23:30:00-01:00")),
    ("member.joined", "2100 local, 2099 in UTC", _set("occurred_at", "2100-01-01T00:30:00+01:00")),
    ("order.placed", "first day", _set("payload.deadline", "2000-01-01")),
    ("order.placed", "last day", _set("payload.deadline", "2099-12-31")),
    ("order.placed", "tab, line feed, carriage return", _set("payload.title", "a\tb\nc\rd")),
    ("order.placed", "escaped backslash then u0000", _set("payload.title", "C:\\u0000")),
]


@pytest.mark.parametrize(
    ("event_type", "mutate"), [(c[0], c[2]) for c in REJECTED], ids=[c[1] for c in REJECTED]
)
def test_schema_and_decoder_reject_the_same_violations(
    event_type: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    event = next(e for e in example_events() if e.event_type == event_type)
    document = _event_doc(event)
    mutate(document)
    errors = list(_validator(f"{event_type}.v1.schema.json").iter_errors(document))
    assert errors, "the JSON Schema accepted it"
    decoded = decode_event(json.dumps(document).encode(), topic=event.family.topic)
    assert not isinstance(decoded, Event), "decode_event accepted it"


@pytest.mark.parametrize(
    ("event_type", "mutate"), [(c[0], c[2]) for c in ACCEPTED], ids=[c[1] for c in ACCEPTED]
)
def test_schema_and_decoder_accept_the_same_boundaries(
    event_type: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    event = next(e for e in example_events() if e.event_type == event_type)
    document = _event_doc(event)
    mutate(document)
    _validator(f"{event_type}.v1.schema.json").validate(document)
    assert isinstance(decode_event(json.dumps(document).encode(), topic=event.family.topic), Event)


def test_the_offset_rule_a_pattern_cannot_express_is_described_and_decoded() -> None:
    """1999-12-31T23:30:00+01:00 is 22:30 UTC on 1999-12-31: the pattern lets the local date pass,
    the description states the UTC rule, and the decoder applies it."""
    event = next(e for e in example_events() if e.event_type == "member.joined")
    document = _event_doc(event)
    document["occurred_at"] = "1999-12-31T23:30:00+01:00"
    schema = json.loads((DEFAULT_DIRECTORY / "member.joined.v1.schema.json").read_text(encoding="utf-8"))
    assert "in UTC between 2000-01-01T00:00:00Z and 2099-12-31T23:59:59Z" in (
        schema["properties"]["occurred_at"]["description"]
    )
    assert not isinstance(decode_event(json.dumps(document).encode()), Event)


def _strings(node: object, path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every schema node of type string under `node`, with its path."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == "string":
            found.append((path, node))
        for key, value in node.items():
            found += _strings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _strings(value, f"{path}/{index}")
    return found


@pytest.mark.parametrize("name", sorted(set(schema_documents()) - {DEADLETTER_FILE}))
def test_every_string_of_an_event_bans_control_characters(name: str) -> None:
    """A pattern, enum or const on every string; each pattern rejects U+0000, U+001B and U+007F."""
    validator = _validator(name)
    strings = _strings(validator.schema, "#")
    assert strings
    for path, node in strings:
        assert {"pattern", "enum", "const"} & set(node), f"{name} {path}: no pattern"
        if "pattern" in node:
            for control in ("\u0000", "\u001b", "\u007f"):
                assert not jsonschema.Draft202012Validator(node).is_valid(f"a{control}b"), (path, control)


def test_member_updated_clearing_the_state_corporation_is_valid_in_both() -> None:
    event = next(e for e in example_events() if e.event_type == "member.updated")
    document = _event_doc(event)
    document["payload"] = {"state_corporation": None}
    _validator("member.updated.v1.schema.json").validate(document)
    assert isinstance(decode_event(json.dumps(document).encode()), Event)


def test_export_check_detects_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "export", "--dir", str(tmp_path)]) == 0
    assert main(["schemas", "export", "--check", "--dir", str(tmp_path)]) == 0
    target = tmp_path / "order.placed.v1.schema.json"
    target.write_text(target.read_text(encoding="utf-8").replace('"maxLength": 64', '"maxLength": 65'))
    (tmp_path / "order.shipped.v1.schema.json").write_text("{}")
    assert main(["schemas", "export", "--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "changed order.placed.v1.schema.json" in err and "extra order.shipped.v1.schema.json" in err
    export(tmp_path)
    assert drift(tmp_path) == []
