"""The publisher and the producer commands on the real broker."""

from __future__ import annotations

import itertools
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kafka import KafkaConsumer, TopicPartition

from mic_pipeline.cli import main
from mic_pipeline.config import Settings
from producers.ground_truth import VALID, read_ground_truth, sha256_hex
from producers.publisher import (
    DeliveryError,
    EventPublisher,
    InvalidEventError,
    PublishError,
    crc32c_accelerated,
    missing_topics,
)
from producers.simulator import SimulationConfig, generate
from schemas.decode import decode_event
from schemas.encode import encode_event
from schemas.events import Event
from schemas.topics import Family

pytestmark = pytest.mark.kafka

INPUT_TOPICS = [family.topic for family in Family]


def _one_event_per_type() -> dict[str, Event]:
    found: dict[str, Event] = {}
    for record in generate(SimulationConfig(seed=8, scale=0.02)):
        event = decode_event(record.value)
        if isinstance(event, Event):
            found.setdefault(event.event_type, event)
        if len(found) == 14:
            return found
    raise AssertionError("unreachable: the stream is endless")


def _consume(
    settings: Settings, logical_topics: list[str], expected: int, timeout_s: float = 30
) -> list[Any]:
    """Every record of the topics, reading until `expected` arrived (or the timeout)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    try:
        consumer.subscribe([settings.topic(t) for t in logical_topics])
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def _end_offsets(settings: Settings, logical_topics: list[str]) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        totals: dict[str, int] = {}
        for logical in logical_topics:
            topic = settings.topic(logical)
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            totals[logical] = sum(consumer.end_offsets(partitions).values())
        return totals
    finally:
        consumer.close()


@pytest.fixture
def cli_env(pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("MIC_KAFKA_BOOTSTRAP", pipeline_topics.kafka_bootstrap)
    monkeypatch.setenv("MIC_TOPIC_PREFIX", pipeline_topics.topic_prefix)
    yield pipeline_topics


def test_crc32c_is_native() -> None:
    assert crc32c_accelerated()


def test_every_event_type_round_trips(pipeline_topics: Settings) -> None:
    events = _one_event_per_type()
    with EventPublisher(pipeline_topics) as publisher:
        for event in events.values():
            publisher.publish(event)
    assert publisher.delivered == 14
    records = _consume(pipeline_topics, INPUT_TOPICS, 14)
    assert len(records) == 14
    for record in records:
        decoded = decode_event(record.value)
        assert isinstance(decoded, Event)
        original = events[decoded.event_type]
        assert decoded == original
        assert record.value == encode_event(original)
        assert record.key == original.company_id.encode()
        assert record.topic == pipeline_topics.topic(original.family.topic)


def test_invalid_event_is_refused_and_nothing_sent(pipeline_topics: Settings) -> None:
    event = _one_event_per_type()["order.placed"]
    broken = msgspec.structs.replace(event, company_id="7700000000")
    with EventPublisher(pipeline_topics) as publisher:
        with pytest.raises(InvalidEventError, match=r"schema_violation: \$\.company_id"):
            publisher.publish(broken)
        with pytest.raises(InvalidEventError, match="malformed"):
            publisher.publish_encoded(b"{not json")
        assert publisher.publish_encoded(encode_event(event)) == event
    assert publisher.sent == publisher.delivered == 1


def test_pending_records_stay_bounded(pipeline_topics: Settings) -> None:
    records = list(itertools.islice(generate(SimulationConfig(seed=6, scale=0.02)), 300))
    highest = 0
    with EventPublisher(pipeline_topics, max_pending=20) as publisher:
        for record in records:
            publisher.publish_raw(record.truth.topic, record.key, record.value)
            highest = max(highest, publisher.pending)
    assert highest <= 20
    assert publisher.delivered == 300
    assert sum(_end_offsets(pipeline_topics, INPUT_TOPICS).values()) == 300


def test_broker_rejection_is_raised_at_flush(pipeline_topics: Settings) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=pipeline_topics.kafka_bootstrap)
    try:
        tiny = NewTopic(pipeline_topics.topic("tiny"), 1, 1, topic_configs={"max.message.bytes": "1024"})
        admin.create_topics([tiny])
    finally:
        admin.close()
    publisher = EventPublisher(pipeline_topics, timeout_s=10)
    publisher.publish_raw("tiny", b"k", os.urandom(20_000))
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="1 record") as caught:
        publisher.close()
    assert time.monotonic() - started < 15
    assert caught.value.failures[0].topic == pipeline_topics.topic("tiny")
    assert "MessageSizeTooLarge" in caught.value.failures[0].error


def test_missing_topic_raises_instead_of_blocking(settings: Settings) -> None:
    publisher = EventPublisher(settings, timeout_s=2)
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"cannot send to \S*mic\.does-not-exist"):
        publisher.publish_raw("mic.does-not-exist", None, b"{}")
    assert time.monotonic() - started < 5
    publisher.close()
    assert missing_topics(settings, ["mic.does-not-exist"]) == [settings.topic("mic.does-not-exist")]


def test_unreachable_broker_raises_quickly(settings: Settings) -> None:
    unreachable = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix=settings.topic_prefix)
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"cannot connect to Kafka at 127\.0\.0\.1:1"):
        EventPublisher(unreachable, timeout_s=2)
    assert time.monotonic() - started < 5


def test_publish_command_publishes_valid_lines(
    cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = list(itertools.islice(generate(SimulationConfig(seed=4, scale=0.02)), 40))
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join([*(r.value for r in records), b"{broken"]) + b"\n")
    assert main(["publish", str(path)]) == 1
    captured = capsys.readouterr()
    assert f"{path}:41: malformed" in captured.err
    assert "published 40, invalid 1" in captured.out
    on_broker = _consume(cli_env, INPUT_TOPICS, 40)
    assert sorted(r.value for r in on_broker) == sorted(r.value for r in records)


def test_publish_raw_sends_every_line_untouched(cli_env: Settings, tmp_path: Path) -> None:
    good = next(r for r in generate(SimulationConfig(seed=4, scale=0.02)) if r.truth.topic == "mic.orders")
    lines = [good.value, b"\xff\xfe not utf-8", b'{"company_id": 7}', b""]
    path = tmp_path / "raw.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["publish", str(path), "--raw", "--topic", "mic.orders"]) == 0
    on_broker = _consume(cli_env, ["mic.orders"], 4)
    assert Counter((r.key, r.value) for r in on_broker) == Counter(
        [(good.key, good.value), (None, lines[1]), (None, lines[2]), (None, b"")]
    )


def test_simulate_rate_and_ground_truth(
    cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth_path = tmp_path / "truth.jsonl"
    argv = [
        "simulate",
        "--rate",
        "500",
        "--duration",
        "4",
        "--seed",
        "5",
        "--scale",
        "0.05",
        "--invalid-fraction",
        "0.05",
        "--ground-truth",
        str(truth_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    achieved = float(re.search(r"achieved ([0-9.]+)/s", out).group(1))  # type: ignore[union-attr]
    assert achieved == pytest.approx(500, rel=0.05)
    truth = list(read_ground_truth(truth_path))
    assert len(truth) == pytest.approx(2000, rel=0.02)
    per_topic = Counter(t.topic for t in truth)
    assert _end_offsets(cli_env, INPUT_TOPICS) == {topic: per_topic[topic] for topic in INPUT_TOPICS}
    on_broker = _consume(cli_env, INPUT_TOPICS, len(truth))
    assert sorted(sha256_hex(r.value) for r in on_broker) == sorted(t.value_sha256 for t in truth)
    assert {t.expected for t in truth} >= {VALID, "duplicate", "malformed", "unknown_company"}
