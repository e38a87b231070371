"""Issue acceptance: `status --json` turns DEGRADED when a real sink is stopped under load, and back to
OK once it has caught up (the SQL sink as a separate `mic-pipeline sink sql` process)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
import pytest
from ops_support import delete_groups, produce, sql_sink, use_settings
from sinks_records import encode, scenario

from mic_pipeline.config import Settings
from mic_pipeline.ops import cli as ops_cli
from schemas.topics import Family

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def status(capsys: pytest.CaptureFixture[str], group: str) -> tuple[int, dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="mic-pipeline")
    ops_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["status", "--json", "--group", group, "--max-lag-records", "10"])
    code: int = args.handler(args)
    return code, orjson.loads(capsys.readouterr().out)


def produce_load(settings: Settings, companies: int, seed: int) -> int:
    """Enriched rows (fresh event_ids) of `companies` companies, each with member, order, patent and
    factoring events, on the enriched topics; returns how many."""
    by_topic: dict[str, list[bytes]] = {}
    for family, row in scenario(companies, seed=seed):
        by_topic.setdefault(settings.topic(family.enriched_topic), []).append(encode(row))
    for topic, values in by_topic.items():
        produce(settings, topic, values)
    return sum(len(values) for values in by_topic.values())


def wait_for_verdict(
    capsys: pytest.CaptureFixture[str],
    group: str,
    verdict: str,
    timeout_s: float,
    topics: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Poll `status --json --group G` until the verdict is `verdict` with the group's committed
    offsets covering `topics`."""
    deadline = time.monotonic() + timeout_s
    while True:
        code, document = status(capsys, group)
        covered = {p["topic"] for g in document["groups"] for p in g["partitions"]}
        if document["verdict"] == verdict and topics <= covered:
            assert code == {"OK": 0, "DEGRADED": 1, "FAILING": 2}[verdict]
            return document
        assert time.monotonic() < deadline, f"still {document['verdict']}: {document['reasons']}"
        time.sleep(0.5)


def test_status_degrades_while_the_sql_sink_is_stopped_and_recovers_after_it_catches_up(
    pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = pipeline_topics
    use_settings(monkeypatch, settings)
    group = f"{settings.topic_prefix}sink-sql"
    try:
        with sql_sink(settings, group) as sink:
            produce_load(settings, 5, seed=1)
            enriched = frozenset(settings.topic(f.enriched_topic) for f in Family)
            document = wait_for_verdict(capsys, group, "OK", timeout_s=60, topics=enriched)
            assert sink.poll() is None, sink.stderr.read().decode() if sink.stderr else ""
            assert document["groups"][0]["lag_records"] == 0
        produced = produce_load(settings, 10, seed=2)
        document = wait_for_verdict(capsys, group, "DEGRADED", timeout_s=20)
        assert document["groups"][0]["lag_records"] >= produced > 10
        assert document["reasons"] == [
            f"group {group}: lag {document['groups'][0]['lag_records']} records (> 10)"
        ]
        with sql_sink(settings, group):
            document = wait_for_verdict(capsys, group, "OK", timeout_s=60)
            assert document["groups"][0]["lag_records"] == 0
            assert document["reasons"] == []
    finally:
        delete_groups(settings, [group])
