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
