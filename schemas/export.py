"""JSON Schema documents for integrators, generated from the models (`schemas/jsonschema/`).

One document per event type and version (`order.placed.v1.schema.json`: the whole event, envelope
and payload), one for the envelope alone and one for dead letters, in JSON Schema 2020-12. They are
`msgspec.json.schema` output, post-processed where the Python types say more than msgspec can
render: money becomes a JSON number with `minimum`/`exclusiveMinimum`, `maximum` 10^13 and
`multipleOf` 0.01; patterns lose Python's `\\Z` anchor; `occurred_at` gets `format: date-time`;
`member.updated` requires at least one changed field. INN check digits cannot be expressed in JSON
Schema: the pattern checks the digits and the description names the algorithm.

`mic-pipeline schemas export` writes them; `--check` (and the test suite) fails when the committed
files differ from what the models generate.

It also writes the AsyncAPI 3.0 document of the pipeline, `asyncapi.yaml` beside the directory
(`schemas/asyncapi.yaml`): every topic as a channel (its key, its Kafka binding), each event type and
version as a message whose payload is `$ref` to its JSON Schema document above, the enriched rows
(from `schemas.warehouse`), the dead letter with its reasons (`schemas.reasons`), and the operations
integrators and consumers perform -- generated from the same models, so it cannot drift either.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import msgspec

from schemas import fields
from schemas.deadletter import DeadLetter
from schemas.encode import encode_event
from schemas.events import Payload
from schemas.examples import EXAMPLE_PAYLOADS, example_event
from schemas.registry import DEFAULT_REGISTRY, PayloadSpec

DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_DIRECTORY = Path(__file__).parent / "jsonschema"
SUFFIX = ".schema.json"
ENVELOPE_FILE = f"envelope.v1{SUFFIX}"
DEADLETTER_FILE = f"deadletter{SUFFIX}"

Schema = dict[str, Any]


def event_file(spec: PayloadSpec) -> str:
    """File name of the document of one event type and version."""
    return f"{spec.event_type}.v{spec.schema_version}{SUFFIX}"


def _summary(cls: type) -> str:
    """The first paragraph of a class docstring, on one line."""
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split())


def _walk(node: object) -> None:
    """Rewrite Python regex anchors (`\\Z`) to ECMA-262 (`$`) everywhere in a schema."""
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and pattern.endswith("\\Z"):
            node["pattern"] = pattern[:-2] + "$"
        for value in node.values():
            _walk(value)
    elif isinstance(node, list):
        for value in node:
            _walk(value)


def _money(node: Schema, *, positive: bool) -> None:
    """Turn msgspec's decimal-as-string schema (possibly inside anyOf) into the contract's number."""
    if node.get("format") == "decimal":
        node["type"] = "number"
        del node["format"]
        node["exclusiveMinimum" if positive else "minimum"] = 0
        node["maximum"] = int(fields.MAX_MONEY)
        node["multipleOf"] = 0.01
    for option in node.get("anyOf", ()):
        _money(option, positive=positive)


def _payload_definition(spec: PayloadSpec, definition: Schema) -> None:
    definition["description"] = _summary(spec.payload_type)
    properties: dict[str, Schema] = definition["properties"]
    for name, positive in spec.money_fields:
        _money(properties[name], positive=positive)
    if spec.requires_any_field:
        alternatives: list[Schema] = []
        for name, default in spec.optional_fields:
            if default is None:
                alternatives.append({"required": [name], "properties": {name: {"not": {"type": "null"}}}})
            else:
                alternatives.append({"required": [name]})
        definition["anyOf"] = alternatives


def _envelope_properties(properties: dict[str, Schema]) -> None:
    properties["occurred_at"]["format"] = "date-time"


def _document(schema: Schema, *, file_name: str, title: str, description: str) -> Schema:
    """A standalone document: the referenced root definition inlined, the rest kept in `$defs`."""
    definitions: dict[str, Schema] = schema["$defs"]
    root_name = schema["$ref"].rsplit("/", 1)[1]
    root = definitions.pop(root_name)
    root.pop("title", None)
    root.pop("description", None)
    document: Schema = {"$schema": DIALECT, "$id": file_name, "title": title, "description": description}
    document.update(root)
    if definitions:
        document["$defs"] = definitions
    _walk(document)
    return document


def _envelope_struct(name: str, payload_type: object) -> type[msgspec.Struct]:
    """The envelope as a struct for msgspec's schema generator, with `payload` of `payload_type`."""
    return msgspec.defstruct(
        name,
        [
            ("event_id", fields.EventId),
            ("event_type", fields.EventType),
            ("schema_version", fields.SchemaVersion),
            ("occurred_at", fields.OccurredAt),
            ("source", fields.Source),
            ("company_id", fields.Inn),
            ("payload", payload_type),
            ("trace_id", fields.TraceId | None, None),
        ],
        forbid_unknown_fields=True,
    )


def _event_document(spec: PayloadSpec, example: Payload | None) -> Schema:
    schema = msgspec.json.schema(_envelope_struct(f"{spec.payload_type.__name__}Event", spec.payload_type))
    _payload_definition(spec, schema["$defs"][spec.payload_type.__name__])
    description = (
        f"Contract event `{spec.event_type}` version {spec.schema_version}, published on topic "
        f"`{spec.family.topic}` with the record key = `company_id`. {_summary(spec.payload_type)} "
        "Unknown fields are rejected; optional fields may be absent or null."
    )
    document = _document(
        schema,
        file_name=event_file(spec),
        title=f"{spec.event_type} v{spec.schema_version}",
        description=description,
    )
    properties: dict[str, Schema] = document["properties"]
    _envelope_properties(properties)
    properties["event_type"] = {"const": spec.event_type}
    properties["schema_version"] = {"const": spec.schema_version}
    if example is not None:
        document["examples"] = [json.loads(encode_event(example_event(example)))]
    return document


def _envelope_document() -> Schema:
    types = sorted({spec.event_type for spec in DEFAULT_REGISTRY.all_specs()})
    description = (
        "The envelope every contract event has. The payload's shape depends on `event_type` and "
        "`schema_version`: see `<event_type>.v<schema_version>.schema.json`."
    )
    document = _document(
        msgspec.json.schema(_envelope_struct("Envelope", dict[str, Any])),
        file_name=ENVELOPE_FILE,
        title="Event envelope v1",
        description=description,
    )
    properties: dict[str, Schema] = document["properties"]
    _envelope_properties(properties)
    properties["event_type"] = {"enum": types, "description": "`<family>.<action>`"}
    properties["payload"] = {"type": "object", "description": "Per event type."}
    return document


def _deadletter_document() -> Schema:
    description = (
        "A record of topic `mic.deadletter`: an event that failed, why, and the original record. "
        "`original_value` is the original text when it was valid UTF-8, else base64 "
        "(`original_encoding`)."
    )
    return _document(
        msgspec.json.schema(DeadLetter),
        file_name=DEADLETTER_FILE,
        title="Dead letter",
        description=description,
    )


def schema_documents() -> dict[str, Schema]:
    """Every document, by file name."""
    examples = {type(payload): payload for payload in EXAMPLE_PAYLOADS}
    documents = {ENVELOPE_FILE: _envelope_document(), DEADLETTER_FILE: _deadletter_document()}
    for spec in DEFAULT_REGISTRY.all_specs():
        documents[event_file(spec)] = _event_document(spec, examples.get(spec.payload_type))
    return documents


def render(document: Schema) -> str:
    """The file text of a document (stable: indented, keys in generation order, final newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def export(directory: Path = DEFAULT_DIRECTORY) -> list[Path]:
    """Write every document into `directory` and delete stale `*.schema.json`, and the AsyncAPI
    document beside it (`asyncapi_path`); returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    documents = schema_documents()
    for stale in directory.glob(f"*{SUFFIX}"):
        if stale.name not in documents:
            stale.unlink()
    written = []
    for name, document in documents.items():
        path = directory / name
        path.write_text(render(document), encoding="utf-8")
        written.append(path)
    from schemas.asyncapi import asyncapi_document, asyncapi_path, render_yaml

    path = asyncapi_path(directory)
    path.write_text(render_yaml(asyncapi_document(directory.name)), encoding="utf-8")
    written.append(path)
    return written


def drift(directory: Path = DEFAULT_DIRECTORY) -> list[str]:
    """What differs between `directory` and the models: `missing`, `changed` or `extra` file names."""
    documents = schema_documents()
    problems = []
    for name, document in documents.items():
        path = directory / name
        if not path.exists():
            problems.append(f"missing {name}")
        elif path.read_text(encoding="utf-8") != render(document):
            problems.append(f"changed {name}")
    problems.extend(
        f"extra {path.name}" for path in sorted(directory.glob(f"*{SUFFIX}")) if path.name not in documents
    )
    from schemas.asyncapi import asyncapi_document, asyncapi_path, render_yaml

    path = asyncapi_path(directory)
    if not path.exists():
        problems.append(f"missing ../{path.name}")
    elif path.read_text(encoding="utf-8") != render_yaml(asyncapi_document(directory.name)):
        problems.append(f"changed ../{path.name}")
    return problems
