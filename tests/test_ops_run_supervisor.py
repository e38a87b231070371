"""The supervisor of `mic-pipeline run` with real child processes: prefixed output, signal forwarding,
SIGKILL after the stop timeout, a child's death failing the run; and `mic-pipeline run` itself
starting the stream, both sinks and the web page and stopping them all on SIGINT (real broker)."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.infra.processes import is_alive
from mic_pipeline.ops.supervisor import ChildDied, ChildSpec, Supervisor, run_supervised, settings_environment

POLITE = """
import signal, sys, time
def bye(signum, frame):
    print(f"got signal {signum}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
signal.signal(signal.SIGINT, bye)
print("hello from {name}", flush=True)
while True:
    time.sleep(0.05)
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
while True:
    time.sleep(0.05)
"""


def python_child(name: str, source: str) -> ChildSpec:
    return ChildSpec(name, (sys.executable, "-c", source.replace("{name}", name)))


def wait_for(predicate: object, timeout_s: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_children_output_is_prefixed_and_sigterm_stops_them_cleanly() -> None:
    output = io.StringIO()
    supervisor = Supervisor(
        [python_child("alpha", POLITE), python_child("beta", POLITE)], output=output, stop_timeout_s=10
    )
    with supervisor:
        wait_for(lambda: output.getvalue().count("| hello from") == 2, 10)
        supervisor.check()
        pids = supervisor.pids()
    lines = output.getvalue().splitlines()
    assert "alpha | hello from alpha" in lines
    assert "beta  | hello from beta" in lines
    assert f"alpha | got signal {int(signal.SIGTERM)}" in lines
    assert "run   | alpha exited with status 0" in lines
    assert supervisor.killed == []
    assert not any(is_alive(pid) for pid in pids.values())


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout() -> None:
    output = io.StringIO()
    supervisor = Supervisor(
        [python_child("polite", POLITE), python_child("stubborn", STUBBORN)], output=output, stop_timeout_s=1
    )
    supervisor.start()
    wait_for(lambda: "| ignoring SIGTERM" in output.getvalue() and "| hello from" in output.getvalue(), 10)
    began = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - began < 8
    assert supervisor.killed == ["stubborn"]
    assert not any(is_alive(pid) for pid in supervisor.pids().values())


def test_a_child_that_dies_fails_the_run_and_the_others_are_stopped() -> None:
    output = io.StringIO()
    dying = ChildSpec("dying", (sys.executable, "-c", "import time; time.sleep(2); raise SystemExit(3)"))
    supervisor = Supervisor([python_child("polite", POLITE), dying], output=output, stop_timeout_s=10)
    assert run_supervised(supervisor) == 1
    text = output.getvalue()
    assert "FAILED: dying" in text and "exited with status 3" in text
    assert f"polite | got signal {int(signal.SIGTERM)}" in text
    lone = Supervisor([dying], output=io.StringIO())
    with lone, pytest.raises(ChildDied, match="exited with status 3"):
        lone.wait(threading.Event(), interval_s=0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_port_pair() -> int:
    """A port p such that p and p + 1 are both free."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


def test_pipeline_children_run_stream_workers_on_consecutive_ports() -> None:
    from mic_pipeline.ops.supervisor import PipelinePorts, pipeline_children

    settings = Settings(topic_prefix="t.")
    children = pipeline_children(settings, PipelinePorts(7000, 7100, 7200, None), stream_workers=3)
    streams = [child for child in children if child.name.startswith("streams")]
    assert [child.name for child in streams] == ["streams-0", "streams-1", "streams-2"]
    assert [child.environment["MIC_STREAMS_WEB_PORT"] for child in streams] == ["7000", "7001", "7002"]
    assert [child.name for child in children[3:]] == ["sink-sql", "sink-parquet"]
    with pytest.raises(ValueError):
        pipeline_children(settings, PipelinePorts(), stream_workers=0)


@pytest.mark.kafka
def test_mic_pipeline_run_starts_every_process_and_stops_them_on_sigint(
    pipeline_topics: Settings, tmp_path: Path
) -> None:
    settings = pipeline_topics
    ports = [free_port_pair(), free_port(), free_port(), free_port()]
    command = [
        sys.executable, "-m", "mic_pipeline.cli", "run", "--stream-workers", "2",
        "--streams-port", str(ports[0]), "--sql-metrics-port", str(ports[1]),
        "--parquet-metrics-port", str(ports[2]), "--web-port", str(ports[3]),
        "--no-gate", "--ready-timeout", "90", "--stop-timeout", "30",
    ]  # fmt: skip
    environment = {**os.environ, **settings_environment(settings)}
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        process = subprocess.Popen(command, env=environment, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "every child is ready" in log.read_text() or process.poll() is not None, 120)
        assert process.poll() is None, log.read_text()
        pids = {name: int(pid) for name, pid in re.findall(r"started (\S+) \(pid (\d+)\)", log.read_text())}
        assert set(pids) == {"streams-0", "streams-1", "sink-sql", "sink-parquet", "web"}
        assert all(is_alive(pid) for pid in pids.values())

        def split() -> bool:  # one consumer group: each worker owns some partitions, together all
            owned = [_partitions(port) for port in (ports[0], ports[0] + 1)]
            return all(owned) and sorted(p for part in owned for p in part) == [0, 1, 2]

        wait_for(split, 90)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    text = log.read_text()
    assert "received SIGINT: stopping every child" in text
    assert "SIGKILL" not in text
    for name in ("streams-0", "streams-1", "sink-sql", "sink-parquet"):
        assert re.search(rf"run\s+\| {name} exited with status 0", text), text
    assert not any(is_alive(pid) for pid in pids.values())


def _partitions(port: int) -> list[int]:
    """The partitions a stream worker owns, from its /health."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        partitions: list[int] = json.loads(response.read())["partitions"]
        return partitions
