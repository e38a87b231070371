"""The AsyncAPI 3.0 document (`schemas/asyncapi.yaml`): generated from the models, committed without
drift, covering every topic, event type, enriched row and dead-letter reason, and valid for the
AsyncAPI parser from npm (`@asyncapi/parser`, installed by scripts/test.sh into
`$MIC_CACHE_DIR/asyncapi`), which also resolves each payload `$ref` to its JSON Schema file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from mic_pipeline.cli import main
from schemas.asyncapi import asyncapi_document, render_yaml
from schemas.export import DEFAULT_DIRECTORY, drift, event_file
from schemas.reasons import DeadLetterReason
from schemas.registry import DEFAULT_REGISTRY
from schemas.topics import AGGREGATES_TOPIC, DEADLETTER_TOPIC, ENRICHED_TOPICS, INPUT_TOPICS, Family
from schemas.warehouse import column_names

COMMITTED = DEFAULT_DIRECTORY.parent / "asyncapi.yaml"
VALIDATE = """
const { Parser, fromFile } = require("@asyncapi/parser");
(async () => {
  const { document, diagnostics } = await fromFile(new Parser(), process.argv[1]).parse();
  const errors = diagnostics.filter(d => d.severity === 0).map(d => d.code + ": " + d.message);
  const summary = { errors };
  if (document !== undefined) {
    summary.channels = document.channels().all().map(c => c.address());
    summary.messages = document.allMessages().all().map(m => m.id());
    const placed = document.components().messages().get("order.placed.v1");
    summary.placed = Object.keys(placed.payload().properties());
    summary.reasons = document.components().messages().get("deadletter").payload().properties()
      .reason.enum();
  }
  console.log(JSON.stringify(summary));
  process.exit(document !== undefined && errors.length === 0 ? 0 : 1);
})();
"""


def node_modules() -> Path:
    cache = Path(os.environ.get("MIC_CACHE_DIR") or Path.home() / ".cache" / "mic-pipeline")
    path = cache / "asyncapi" / "node_modules"
    if shutil.which("node") is None or not (path / "@asyncapi" / "parser").is_dir():
        message = f"node or @asyncapi/parser in {path} missing (scripts/test.sh installs it)"
        if os.environ.get("MIC_REQUIRE_INFRA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def parse(path: Path) -> tuple[int, dict[str, Any]]:
    finished = subprocess.run(
        ["node", "-e", VALIDATE, str(path)],
        env={**os.environ, "NODE_PATH": str(node_modules())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = finished.stdout.strip().splitlines()
    assert lines, finished.stderr
    return finished.returncode, json.loads(lines[-1])


def test_the_committed_document_is_what_the_models_generate() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render_yaml(asyncapi_document())
    assert drift() == []
    assert YAML(typ="safe").load(COMMITTED.read_text()) == asyncapi_document()


def test_export_writes_it_and_check_fails_on_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "jsonschema"
    assert main(["schemas", "export", "--dir", str(directory)]) == 0
    written = tmp_path / "asyncapi.yaml"
    assert written.read_text() == render_yaml(asyncapi_document("jsonschema"))
    written.write_text(written.read_text().replace('"mic.orders"', '"mic.order"', 1))
    assert main(["schemas", "export", "--check", "--dir", str(directory)]) == 1
    assert "changed ../asyncapi.yaml" in capsys.readouterr().err
    written.unlink()
    assert drift(directory) == ["missing ../asyncapi.yaml"]


def test_every_topic_event_type_column_and_reason_is_in_it() -> None:
    document = asyncapi_document()
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {*INPUT_TOPICS, *ENRICHED_TOPICS, DEADLETTER_TOPIC, AGGREGATES_TOPIC}
    messages = document["components"]["messages"]
    for spec in DEFAULT_REGISTRY.all_specs():
        message = messages[f"{spec.event_type}.v{spec.schema_version}"]
        assert message["payload"] == {"$ref": f"./jsonschema/{event_file(spec)}"}
        assert (DEFAULT_DIRECTORY / event_file(spec)).is_file()
        assert message["bindings"]["kafka"]["key"]["pattern"] == "^[0-9]{10}([0-9]{2})?$"
        channel = next(c for c in document["channels"].values() if c["address"] == spec.family.topic)
        assert f"{spec.event_type}.v{spec.schema_version}" in channel["messages"]
    for family in Family:
        row = messages[f"{family.value}.enriched"]["payload"]
        assert tuple(row["properties"]) == column_names(family) == tuple(row["required"])
    summary = messages["deadletter"]["summary"]
    assert all(f"`{reason.value}`: " in summary for reason in DeadLetterReason)
    operations = document["operations"]
    assert {o["action"] for o in operations.values()} == {"send", "receive"}
    assert sum(o["action"] == "send" for o in operations.values()) == len(INPUT_TOPICS)


def test_the_asyncapi_parser_validates_it_and_resolves_the_payload_schemas() -> None:
    code, summary = parse(COMMITTED)
    assert (code, summary["errors"]) == (0, [])
    assert sorted(summary["channels"]) == sorted(
        [*INPUT_TOPICS, *ENRICHED_TOPICS, DEADLETTER_TOPIC, AGGREGATES_TOPIC]
    )
    assert len(summary["messages"]) == len(DEFAULT_REGISTRY.all_specs()) + len(Family) + 2
    assert summary["placed"][:2] == ["event_id", "event_type"] and "payload" in summary["placed"]
    assert sorted(summary["reasons"]) == sorted(r.value for r in DeadLetterReason)


def test_the_parser_rejects_a_broken_document(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_DIRECTORY, tmp_path / "jsonschema")
    broken = tmp_path / "asyncapi.yaml"
    text = COMMITTED.read_text()
    broken.write_text(text.replace('action: "send"', 'action: "publish"', 1))
    code, summary = parse(broken)
    assert code == 1 and summary["errors"], summary
