"""Helpers of the stream tests on the real broker: worker subprocesses, producing, reading outputs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mic_pipeline.config import Settings
from schemas.deadletter import parse_dead_letter
from schemas.topics import DEADLETTER_TOPIC, Family
from streams.offline import offline_aggregates

MAX_RECORD_BYTES = 12 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Worker:
    """One `mic-pipeline streams` subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def aggregates(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/aggregates", timeout=5) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document

    def kill(self) -> None:
        """kill -9."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """A graceful stop (SIGTERM), kill -9 after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Workers:
    """Starts workers for one test and kills every one of them at teardown."""

    settings: Settings
    directory: Path
    env: dict[str, str] = field(default_factory=dict)
    started: list[Worker] = field(default_factory=list)

    def start(self, *, ready_timeout_s: float = 60.0) -> Worker:
        port = free_port()
        log = self.directory / f"worker-{len(self.started)}-{port}.log"
        env = {
            **os.environ,
            "MIC_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "MIC_TOPIC_PREFIX": self.settings.topic_prefix,
            "MIC_STATE_DIR": str(self.settings.state_dir),
            "MIC_PARTITIONS": str(self.settings.partitions),
            "MIC_STREAMS_WEB_PORT": str(port),
            "MIC_STREAMS_MEMBER_WAIT_S": "6",
            "MIC_STREAMS_RECHECK_S": "0.25",
            "MIC_STREAMS_SNAPSHOT_S": "1.0",
            **self.env,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "mic_pipeline.cli", "streams", "--loglevel", "info"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, port, log)
        self.started.append(worker)
        wait_until(lambda: _answers(worker), ready_timeout_s, f"worker on port {port} did not start ({log})")
        return worker

    def kill_all(self) -> None:
        for worker in self.started:
            worker.kill()


def _answers(worker: Worker) -> bool:
    if worker.process.poll() is not None:
        raise AssertionError(
            f"worker exited with {worker.process.returncode}: {worker.log.read_text()[-3000:]}"
        )
    try:
        worker.aggregates()
    except OSError:
        return False
    return True


def wait_until(
    condition: Callable[[], bool], timeout_s: float, message: str, interval_s: float = 0.25
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s: {message}")


def produce(settings: Settings, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    """Send `(logical topic, key, value)` records, acks=all; returns how many."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=5,
        max_request_size=MAX_RECORD_BYTES,
        compression_type=None,
    )
    count = 0
    try:
        for topic, key, value in records:
            producer.send(settings.topic(topic), key=key, value=value)
            count += 1
        producer.flush(timeout=60)
    finally:
        producer.close()
    return count


def read_topic(settings: Settings, logical_topic: str) -> list[Any]:
    """Every record of a topic up to its current end, read_committed."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
        fetch_max_bytes=MAX_RECORD_BYTES,
    )
    try:
        name = settings.topic(logical_topic)
        partitions = [TopicPartition(name, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            # a partial read would make every check after it wrong: fail instead
            assert time.monotonic() < deadline, f"{name}: not read to its end offsets {ends} in 60 s"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def dead_letter_identity(event_id: str | None, value: bytes, truncated: bool, size: int) -> str:
    """How a dead letter is matched to the ground truth: its event id, else a digest of the value."""
    if event_id is not None:
        return event_id
    if truncated:
        return f"truncated:{size}"
    return hashlib.sha256(value).hexdigest()


@dataclass
class Outputs:
    """What the stream produced, read back from the broker."""

    rows: list[dict[str, Any]]
    dead_letters: dict[tuple[str, str, int, int], tuple[str, str]]
    """(topic, partition, offset) of the original -> (identity, reason), one per original record."""

    @property
    def row_counts(self) -> Counter[str]:
        return Counter(str(row["event_id"]) for row in self.rows)

    def offline(self, duplicates: int) -> dict[str, Any]:
        return offline_aggregates(self.rows, [reason for _, reason in self.dead_letters.values()], duplicates)


def read_outputs(settings: Settings) -> Outputs:
    rows: list[dict[str, Any]] = []
    for family in Family:
        for record in read_topic(settings, family.enriched_topic):
            rows.append(json.loads(record.value))
    letters: dict[tuple[str, str, int, int], tuple[str, str]] = {}
    for record in read_topic(settings, DEADLETTER_TOPIC):
        letter = parse_dead_letter(record.value)
        identity = dead_letter_identity(
            letter.event_id, letter.value_bytes(), letter.original_truncated, letter.original_size
        )
        where = ("dl", letter.original_topic, letter.original_partition, letter.original_offset)
        letters[where] = (identity, letter.reason.value)
    return Outputs(rows, letters)


def aggregates_diff(live: Any, offline: Any, path: str = "") -> list[str]:
    """Where two aggregates documents differ, one line per leaf (`path: live X != offline Y`)."""
    if isinstance(live, dict) and isinstance(offline, dict):
        return [
            line
            for key in sorted(set(live) | set(offline))
            for line in aggregates_diff(live.get(key), offline.get(key), f"{path}/{key}")
        ]
    return [] if live == offline else [f"{path}: live {live} != offline {offline}"]
