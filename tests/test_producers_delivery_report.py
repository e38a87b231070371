"""`publish|simulate --delivery-report`: a record is sent only once acknowledged; every other record
handed to the producer is reported as failed, with the exit code and the count."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from mic_pipeline.cli import main
from mic_pipeline.config import Settings
from producers.delivery_report import NO_ANSWER, DeliveryReport
from producers.ground_truth import read_ground_truth
from producers.publisher import Delivery


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_record_handed_over_gets_one_line_and_the_unanswered_ones_fail(tmp_path: Path) -> None:
    report = DeliveryReport(tmp_path / "report.jsonl", "line")
    for line in (1, 2, 3):
        report.handed(line, "p.mic.orders")
    report(Delivery(2, "p.mic.orders", b"k", error="KafkaTimeoutError: no answer"))
    report(Delivery(1, "p.mic.orders", b"k", partition=0, offset=7))
    report.finish()
    assert _lines(report.path) == [
        {"line": 2, "topic": "p.mic.orders", "acknowledged": False, "error": "KafkaTimeoutError: no answer"},
        {"line": 1, "topic": "p.mic.orders", "acknowledged": True, "partition": 0, "offset": 7},
        {"line": 3, "topic": "p.mic.orders", "acknowledged": False, "error": NO_ANSWER},
    ]
    assert (report.acknowledged, report.failed) == (1, 2)


@pytest.fixture
def cli_env(pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("MIC_KAFKA_BOOTSTRAP", pipeline_topics.kafka_bootstrap)
    monkeypatch.setenv("MIC_TOPIC_PREFIX", pipeline_topics.topic_prefix)
    yield pipeline_topics


@pytest.mark.kafka
def test_records_the_broker_refuses_are_reported_failed_never_published(
    cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams_kafka import read_topic

    from mic_pipeline.infra.topics import TopicSpec, admin_client, ensure_topics

    tiny = TopicSpec(cli_env.topic("tiny"), cli_env.partitions, {"max.message.bytes": "2048"})
    with admin_client(cli_env) as admin:
        ensure_topics(admin, [tiny])
    # lines 3, 6, 9 and 12 too big, even compressed
    values = [b"small-%d" % n if n % 3 else secrets.token_hex(10_000).encode() for n in range(1, 13)]
    path = tmp_path / "raw.jsonl"
    path.write_bytes(b"\n".join(values) + b"\n")
    report_path = tmp_path / "report.jsonl"

    status = main(["publish", str(path), "--raw", "--topic", "tiny", "--timeout", "10",
                   "--delivery-report", str(report_path)])

    assert status == 3
    err = capsys.readouterr().err
    lines = _lines(report_path)
    assert sorted(int(str(line["line"])) for line in lines) == list(range(1, 13))
    failed = sorted(int(str(line["line"])) for line in lines if not line["acknowledged"])
    # the too-big records fail; the idempotent producer may abort others of their batches with them
    assert {3, 6, 9, 12} <= set(failed)
    summary = (f"12 records handed to the producer: {12 - len(failed)} acknowledged, "
               f"{len(failed)} NOT acknowledged")
    assert summary in err and str(report_path) in err
    errors = [str(line["error"]) for line in lines if not line["acknowledged"]]
    assert all(re.search("MessageSizeTooLarge", error) for error in errors), errors
    on_broker = {(record.partition, record.offset): record.value for record in read_topic(cli_env, "tiny")}
    acknowledged = {(line["partition"], line["offset"]): values[int(str(line["line"])) - 1]
                    for line in lines if line["acknowledged"]}
    assert on_broker == acknowledged


@pytest.mark.kafka
def test_simulate_reports_each_sequence_number_acknowledged(
    cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth_path, report_path = tmp_path / "truth.jsonl", tmp_path / "report.jsonl"
    argv = ["simulate", "--rate", "400", "--duration", "1", "--seed", "3", "--scale", "0.02",
            "--ground-truth", str(truth_path), "--delivery-report", str(report_path)]
    assert main(argv) == 0
    assert "records acknowledged by the broker" in capsys.readouterr().out
    truth = {t.seq: cli_env.topic(t.topic) for t in read_ground_truth(truth_path)}
    lines = _lines(report_path)
    assert len(lines) == len(truth) > 300
    assert all(line["acknowledged"] is True for line in lines)
    assert {int(str(line["seq"])): line["topic"] for line in lines} == truth
