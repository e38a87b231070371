"""Helpers of the operator-tool tests: produce records with known timestamps, commit a group's
offsets, read a topic back, run the CLI with an isolated pipeline's environment."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from mic_pipeline.config import Settings
from mic_pipeline.ops import cli as ops_cli
from mic_pipeline.ops.verdict import ENV_VARIABLES
from schemas.deadletter import build_dead_letter
from schemas.reasons import DeadLetterReason


def use_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Point `Settings.from_env()` (what the CLI reads) at the test's isolated pipeline."""
    monkeypatch.setenv("MIC_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("MIC_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("MIC_WAREHOUSE_DIR", str(settings.warehouse_dir))
    monkeypatch.setenv("MIC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MIC_STATE_DIR", str(settings.state_dir))  # no `run` of another test's
    monkeypatch.delenv("MIC_HEALTH_URLS", raising=False)
    for name in ENV_VARIABLES.values():
        monkeypatch.delenv(name, raising=False)


def produce(
    settings: Settings,
    topic: str,
    values: Sequence[bytes],
    *,
    partition: int = 0,
    key: bytes | None = b"7707083893",
    timestamp_ms: int | None = None,
) -> list[int]:
    """Append `values` to one partition (with one record timestamp when given); returns their offsets."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        futures = [
            producer.send(topic, key=key, value=value, partition=partition, timestamp_ms=timestamp_ms)
            for value in values
        ]
        producer.flush(timeout=10)
        return [future.get(timeout=10).offset for future in futures]
    finally:
        producer.close(timeout=10)


def commit(settings: Settings, group: str, offsets: Mapping[TopicPartition, int]) -> None:
    """Set a (member-less) group's committed offsets."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        result = admin.alter_group_offsets(
            group, {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}
        )
        errors = {tp: error for tp, error in result.items() if error.errno != 0}
        assert not errors, errors
    finally:
        admin.close()


@contextmanager
def consumer_group(settings: Settings, group: str, topic: str, partition: int = 0) -> Iterator[KafkaConsumer]:
    """A real consumer of `group` assigned one partition, auto-commit off (the test commits)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    consumer.assign([TopicPartition(topic, partition)])
    try:
        yield consumer
    finally:
        consumer.close(autocommit=False)


def consume_and_commit(consumer: KafkaConsumer, count: int, timeout_s: float = 15.0) -> None:
    """Poll exactly `count` records (one at a time, so none beyond) and commit after them."""
    got = 0
    deadline = time.monotonic() + timeout_s
    while got < count:
        assert time.monotonic() < deadline, f"consumed {got} of {count} records in {timeout_s} s"
        got += sum(len(r) for r in consumer.poll(timeout_ms=200, max_records=1).values())
    consumer.commit()


def read_topic(
    settings: Settings, topic: str, expected: int, timeout_s: float = 15.0
) -> list[ConsumerRecord]:
    """Every record of `topic` from the beginning, once `expected` have arrived (bounded wait)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def delete_groups(settings: Settings, groups: Sequence[str]) -> None:
    """Remove the test's consumer groups from the shared broker."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.delete_groups(list(groups))
    finally:
        admin.close()


def dead_letter(
    settings: Settings,
    *,
    reason: str,
    original_topic: str,
    original_value: bytes,
    event_id: str | None = None,
    event_type: str | None = None,
    key: bytes | None = b"7707083893",
    failed_at: str = "2026-01-01T00:00:00Z",
) -> bytes:
    """A dead letter as the stream writes it (`schemas.deadletter.build_dead_letter`)."""
    return build_dead_letter(
        reason=DeadLetterReason(reason),
        detail=f"test {reason}",
        original_topic=settings.topic(original_topic),
        original_partition=0,
        original_offset=7,
        original_key=key,
        original_value=original_value,
        event_id=event_id,
        event_type=event_type,
        failed_at=datetime.fromisoformat(failed_at.replace("Z", "+00:00")),
    )


@contextmanager
def sql_sink(settings: Settings, group: str, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """`mic-pipeline sink sql --no-gate [options]` in `group` on `settings`' topics and warehouse;
    SIGTERM at the end (SIGKILL after 20 s)."""
    env = dict(os.environ)
    env.update(
        MIC_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        MIC_TOPIC_PREFIX=settings.topic_prefix,
        MIC_WAREHOUSE_DIR=str(settings.warehouse_dir),
        MIC_DATABASE_URL=settings.database_url,
    )
    command = [sys.executable, "-m", "mic_pipeline.cli", "sink", "sql", "--group-id", group, "--no-gate"]
    command += options
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one operator subcommand as `mic-pipeline` would; returns (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="mic-pipeline")
    ops_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
