"""The AsyncAPI 3.0 document of the pipeline, generated from the models (`schemas/asyncapi.yaml`).

Written by `mic-pipeline schemas export` beside the JSON Schema directory (`schemas.export`); CI
validates it with the AsyncAPI parser (tests/test_asyncapi.py) and fails when the committed file
differs from what the models generate.

- channels: every topic of `schemas.topics` (logical names: a deployment may prefix them,
  `MIC_TOPIC_PREFIX`), with its Kafka binding (partitions: `mic-pipeline topics create`'s default);
- messages: each event type and version (`schemas.registry`), its payload a `$ref` to the JSON Schema
  document `schemas.export` writes for it, its key the `company_id`; each family's enriched row
  (`schemas.warehouse`, one property per column); the dead letter (`schemas.deadletter`, the reason
  enumerated from `schemas.reasons`); the aggregates snapshot;
- operations: what integrators send (the input topics) and what consumers receive (enriched rows,
  dead letters, aggregates).

The YAML is rendered here (no YAML library at run time): keys plain where safe, every string value a
JSON string (valid YAML), so the file is deterministic.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

from schemas.reasons import DeadLetterReason
from schemas.registry import DEFAULT_REGISTRY, PayloadSpec
from schemas.topics import AGGREGATES_TOPIC, DEADLETTER_TOPIC, Family
from schemas.warehouse import Column, columns

ASYNCAPI_FILE = "asyncapi.yaml"
PARTITIONS = 6
KAFKA_BINDING = "0.5.0"
INN_KEY = {
    "type": "string",
    "pattern": "^[0-9]{10}([0-9]{2})?$",
    "description": "The record key: the event's company_id (an INN), so a company's events keep their order.",
}
_KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "enum": {"type": "string"},
    "int": {"type": "integer"},
    "money": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$", "description": "Money: 2 decimals."},
    "date": {"type": "string", "format": "date"},
    "timestamp": {"type": "string", "format": "date-time", "description": "UTC, with a Z suffix."},
    "rate": {"type": "number"},
}


def asyncapi_path(directory: Path) -> Path:
    """Where the document goes: beside the JSON Schema directory."""
    return directory.parent / ASYNCAPI_FILE


def _channel_id(topic: str) -> str:
    return topic.removeprefix("mic.").replace(".", "-")


def _message_id(spec: PayloadSpec) -> str:
    return f"{spec.event_type}.v{spec.schema_version}"


def _summary(cls: type) -> str:
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split())


def _event_message(spec: PayloadSpec, schema_dir: str) -> dict[str, Any]:
    from schemas.export import event_file

    return {
        "name": spec.event_type,
        "title": f"{spec.event_type} v{spec.schema_version}",
        "summary": _summary(spec.payload_type),
        "contentType": "application/json",
        "payload": {"$ref": f"./{schema_dir}/{event_file(spec)}"},
        "bindings": {"kafka": {"key": INN_KEY, "bindingVersion": KAFKA_BINDING}},
    }


def _column_schema(column: Column) -> dict[str, Any]:
    kind = dict(_KIND_SCHEMAS[column.kind])
    return kind if not column.nullable else {"oneOf": [kind, {"type": "null"}]}


def _enriched_message(family: Family) -> dict[str, Any]:
    return {
        "name": f"{family.value}.enriched",
        "title": f"Enriched {family.value} row",
        "summary": f"A valid {family.value} event as one flat row of `{family.table}`: the envelope, the "
        "payload's fields and the enrichment columns of the company and its counterparty (null where they do "
        "not apply). The sinks land it in SQL and Parquet and add `landed_at`.",
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "additionalProperties": False,
            "required": [c.name for c in columns(family)],
            "properties": {c.name: _column_schema(c) for c in columns(family)},
        },
        "bindings": {"kafka": {"key": INN_KEY, "bindingVersion": KAFKA_BINDING}},
    }


def _dead_letter_message(schema_dir: str) -> dict[str, Any]:
    from schemas.export import DEADLETTER_FILE

    reasons = "; ".join(
        f"`{reason.value}`: {' '.join(inspect.cleandoc(_reason_doc(reason)).split())}"
        for reason in DeadLetterReason
    )
    return {
        "name": "deadletter",
        "title": "Dead letter",
        "summary": f"An event that failed, why, and the original record. Reasons: {reasons}.",
        "contentType": "application/json",
        "payload": {"$ref": f"./{schema_dir}/{DEADLETTER_FILE}"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original record's key."},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _reason_doc(reason: DeadLetterReason) -> str:
    source = inspect.getsource(DeadLetterReason)
    match = re.search(rf'{reason.name} = "{reason.value}"\n\s+"""(.*?)"""', source, re.S)
    return match.group(1) if match else reason.value


def _aggregates_message() -> dict[str, Any]:
    return {
        "name": "aggregates",
        "title": "Aggregates snapshot section",
        "summary": "One section of the live aggregates document (members, orders, patents, factoring, "
        "quality); the topic is compacted, the key is the section's name.",
        "contentType": "application/json",
        "payload": {"type": "object"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The section's name."},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _channel(topic: str, description: str, messages: list[str], *, compacted: bool = False) -> dict[str, Any]:
    binding: dict[str, Any] = {"topic": topic, "partitions": PARTITIONS, "bindingVersion": KAFKA_BINDING}
    if compacted:
        binding["topicConfiguration"] = {"cleanup.policy": ["compact"]}
    return {
        "address": topic,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": {"kafka": binding},
    }


def asyncapi_document(schema_dir: str = "jsonschema") -> dict[str, Any]:
    """The document; payload `$ref`s point into `./<schema_dir>/`."""
    specs = DEFAULT_REGISTRY.all_specs()
    messages: dict[str, Any] = {_message_id(s): _event_message(s, schema_dir) for s in specs}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for family in Family:
        mine = [_message_id(s) for s in specs if s.family is family]
        channel = _channel_id(family.topic)
        channels[channel] = _channel(
            family.topic,
            f"Contract events of the {family.value} family, published by integrating systems "
            "(`mic-pipeline validate` checks a file against these schemas first).",
            mine,
        )
        operations[f"publish-{channel}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"An integrating system publishes {family.value} events (acks=all, key = company_id).",
        }
        enriched = _channel_id(family.enriched_topic)
        messages[f"{family.value}.enriched"] = _enriched_message(family)
        channels[enriched] = _channel(
            family.enriched_topic,
            f"The stream's valid {family.value} events as warehouse rows (same partition as the input).",
            [f"{family.value}.enriched"],
        )
        operations[f"consume-{enriched}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{enriched}"},
            "summary": f"The sinks (or any consumer) read the enriched {family.value} rows.",
        }
    messages["deadletter"] = _dead_letter_message(schema_dir)
    messages["aggregates"] = _aggregates_message()
    channels["deadletter"] = _channel(
        DEADLETTER_TOPIC,
        "Every record the stream or a sink could not accept, with the reason; nothing is dropped silently.",
        ["deadletter"],
    )
    channels["aggregates"] = _channel(
        AGGREGATES_TOPIC,
        "The live aggregates, one record per section (compacted).",
        ["aggregates"],
        compacted=True,
    )
    operations["consume-deadletter"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/deadletter"},
        "summary": "Integrators and operators read why events failed (`mic-pipeline deadletters list`).",
    }
    operations["consume-aggregates"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/aggregates"},
        "summary": "Dashboards read the live aggregates.",
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "MIC event pipeline",
            "version": "1.0.0",
            "description": "The Moscow Innovation Cluster's event contract (../shared/CONTRACT.md) as "
            "Kafka topics: what integrating systems publish, what the pipeline produces. Generated by "
            "`mic-pipeline schemas export` from the models; topic names get the deployment's "
            "MIC_TOPIC_PREFIX in front.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster (MIC_KAFKA_BOOTSTRAP).",
                "variables": {"bootstrap": {"default": "127.0.0.1:9092"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$-]*$")


def render_yaml(document: Any) -> str:
    """`document` as YAML: block mappings and sequences, strings as JSON strings (final newline)."""
    return "\n".join(_lines(document, 0)) + "\n"


def _key(key: str) -> str:
    reserved = ("true", "false", "null", "yes", "no")
    return key if _PLAIN_KEY.match(key) and key not in reserved else json.dumps(key)


def _scalar(value: Any) -> str:
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    return json.dumps(value, ensure_ascii=False)


def _lines(node: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(node, dict) and node:
        for key, value in node.items():
            if isinstance(value, dict | list) and value:
                lines.append(f"{pad}{_key(key)}:")
                lines.extend(_lines(value, indent + 2))
            else:
                lines.append(f"{pad}{_key(key)}: {_scalar(value)}")
    elif isinstance(node, list) and node:
        for value in node:
            if isinstance(value, dict | list) and value:
                nested = _lines(value, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(value)}")
    else:
        lines.append(f"{pad}{_scalar(node)}")
    return lines
