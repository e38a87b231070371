"""`mic-pipeline sink` as a user runs it: an unreachable broker at start is one clear line and exit 3;
a sink still starting is not ready."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from streams_kafka import free_port, wait_until


def test_an_unreachable_broker_at_start_is_one_clear_line_and_exit_3(tmp_path: Path) -> None:
    env = {**os.environ, "MIC_KAFKA_BOOTSTRAP": "127.0.0.1:1", "MIC_WAREHOUSE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", "sink", "parquet", "--no-gate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mic-pipeline sink parquet: Kafka at 127.0.0.1:1: KafkaTimeoutError: ")


def test_a_sink_loading_its_gate_and_connecting_is_not_ready(tmp_path: Path) -> None:
    """/health is served from the start, before the quality gate is loaded (seconds) and the clients
    connect: it must say "starting", not ready (it answered 200 while the gate loaded before)."""
    port = free_port()
    env = {**os.environ, "MIC_KAFKA_BOOTSTRAP": "127.0.0.1:1", "MIC_WAREHOUSE_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "mic_pipeline.cli", "sink", "parquet", "--metrics-port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    answers: list[tuple[int, dict[str, object]]] = []

    def answered() -> bool:
        assert process.poll() is None, "the sink ended before /health answered"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                answers.append((response.status, json.loads(response.read())))
        except urllib.error.HTTPError as error:
            answers.append((error.code, json.loads(error.read())))
        except OSError:
            return False
        return True

    try:
        wait_until(answered, 120, "the sink's /health never answered")
    finally:
        process.terminate()
        process.wait(timeout=60)
    status, document = answers[0]
    assert status == 503 and document["status"] == "not ready", document
    assert any("starting" in str(reason) for reason in document["reasons"]), document  # type: ignore[attr-defined]


def test_a_refused_dead_letter_produce_stops_the_sink_instead_of_retrying_forever() -> None:
    """An ACL revoked while the sink runs: no retry can cure it (`sinks.runner.REFUSED`)."""
    import pytest
    from kafka.errors import TopicAuthorizationFailedError

    from schemas.reasons import DeadLetterReason
    from sinks.batch import Rejected, SourceRecord
    from sinks.errors import TransientSinkError
    from sinks.runner import RunnerConfig, SinkRunner

    class Future:
        is_done = True

        def __init__(self, error: Exception | None) -> None:
            self.exception = error

        def failed(self) -> bool:
            return self.exception is not None

    class Producer:
        def __init__(self, error: Exception | None) -> None:
            self.error = error

        def send(self, topic: str, key: bytes | None, value: bytes) -> Future:
            return Future(self.error)

        def flush(self, timeout: float) -> None:
            return None

    runner = SinkRunner.__new__(SinkRunner)
    runner.config = RunnerConfig(group_id="g")
    runner._deadletter_topic = "mic.deadletter"
    rejected = [Rejected(SourceRecord("t", 0, 1, b"k", b"v"), DeadLetterReason.MALFORMED, "bad")]
    runner._producer = Producer(TopicAuthorizationFailedError("mic.deadletter"))
    with pytest.raises(TopicAuthorizationFailedError):
        runner._produce_dead_letters(rejected)
    runner._producer = Producer(OSError("broker gone"))  # anything else is retried
    with pytest.raises(TransientSinkError):
        runner._produce_dead_letters(rejected)


def test_a_connection_lost_while_the_clients_start_is_tried_again_until_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node of a cluster killed while the sink's consumer bootstraps (the 3-broker fault stage saw
    the sink exit with 3): the next attempt reaches the live brokers. Past `connect_timeout_s` the
    error is the sink's exit, as for a broker unreachable at start."""
    import pytest
    from kafka.errors import KafkaConnectionError

    import sinks.runner as runner_module
    from mic_pipeline.health import Health
    from sinks.runner import RunnerConfig, SinkRunner

    class Client:
        def close(self, autocommit: bool = True) -> None:
            return None

    attempts: list[int] = []

    def consumer_failing_first(self: SinkRunner) -> Client:
        attempts.append(1)
        if len(attempts) == 1:
            raise KafkaConnectionError("Connection lost")
        return Client()

    monkeypatch.setattr(SinkRunner, "_subscribed_consumer", consumer_failing_first)
    monkeypatch.setattr(runner_module, "KafkaProducer", lambda **_: Client())
    monkeypatch.setattr(runner_module, "kafka_python_options", lambda settings, **options: options)
    runner = SinkRunner.__new__(SinkRunner)
    runner.settings = type("S", (), {"kafka_bootstrap": "b:1"})()
    runner.health = Health("sink-test")
    runner.config = RunnerConfig(group_id="g", connect_timeout_s=10.0)
    consumer, producer = runner._connect()
    assert len(attempts) == 2 and isinstance(consumer, Client) and isinstance(producer, Client)

    def consumer_always_failing(self: SinkRunner) -> Client:
        attempts.append(1)
        raise KafkaConnectionError("Connection lost")

    monkeypatch.setattr(SinkRunner, "_subscribed_consumer", consumer_always_failing)
    runner.config = RunnerConfig(group_id="g", connect_timeout_s=0.0)
    attempts.clear()
    with pytest.raises(KafkaConnectionError):
        runner._connect()
    assert len(attempts) == 1
