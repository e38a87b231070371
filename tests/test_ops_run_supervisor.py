"""The supervisor of `mic-pipeline run` with real child processes: prefixed output, signal forwarding,
SIGKILL after the stop timeout, a crashed child restarted with backoff (killed by SIGKILL), too many
restarts (or a configuration error) failing the run with a report; and `mic-pipeline run` itself
starting the stream, both sinks and the web page, restarting the SQL sink after a kill -9, telling
`status` its children, and stopping them all on SIGINT (real broker)."""

from __future__ import annotations

import io
import json
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
from mic_pipeline.ops.children import ChildSpec, settings_environment
from mic_pipeline.ops.supervisor import ChildDied, RestartPolicy, Supervisor, run_supervised

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


NO_RESTARTS = RestartPolicy(max_restarts=0)
QUICK = RestartPolicy(max_restarts=2, window_s=60, backoff_s=0.2, max_backoff_s=0.3)
SELF_KILLING = """
import os, signal, time
print("up, about to be killed", flush=True)
time.sleep(0.3)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_without_restarts_a_child_that_dies_fails_the_run_and_the_others_are_stopped() -> None:
    output = io.StringIO()
    dying = ChildSpec("dying", (sys.executable, "-c", "import time; time.sleep(2); raise SystemExit(3)"))
    supervisor = Supervisor(
        [python_child("polite", POLITE), dying], output=output, stop_timeout_s=10, restart=NO_RESTARTS
    )
    assert run_supervised(supervisor) == 1
    text = output.getvalue()
    assert re.search(r"FAILED: dying \(pid \d+\) exited with status 3 \(restarts are off\)", text), text
    assert f"polite | got signal {int(signal.SIGTERM)}" in text
    lone = Supervisor([dying], output=io.StringIO(), restart=NO_RESTARTS)
    with lone, pytest.raises(ChildDied, match="exited with status 3"):
        lone.wait(threading.Event(), interval_s=0.1)


def test_a_child_killed_by_sigkill_is_restarted_after_a_backoff_and_the_others_keep_running() -> None:
    output = io.StringIO()
    supervisor = Supervisor(
        [python_child("alpha", POLITE), python_child("beta", POLITE)], output=output, restart=QUICK
    )
    with supervisor:
        wait_for(lambda: output.getvalue().count("| hello from") == 2, 10)
        first = supervisor.pids()
        for restart, backoff, hellos in ((1, 0.2, 2), (2, 0.3, 3)):  # doubling, capped at 0.3 s
            killed = supervisor.pids()["alpha"]
            os.kill(killed, signal.SIGKILL)
            died = time.monotonic()
            wait_for(lambda: output.getvalue().count("alpha | hello from alpha") == hellos, 10)  # noqa: B023
            new = supervisor.pids()["alpha"]
            assert new != killed and is_alive(new)
            assert time.monotonic() - died >= backoff
            lines = output.getvalue().splitlines()
            logged = (
                f"alpha exited with status -9; restarting in {backoff} s (restart {restart} of 2 in 60 s)"
            )
            assert f"run   | {logged}" in lines
            assert f"run   | restarted alpha (pid {new})" in lines
            supervisor.check()
        assert supervisor.pids()["beta"] == first["beta"] and is_alive(first["beta"])
        assert output.getvalue().count("beta  | hello from beta") == 1
        pids = supervisor.pids()
    lines = output.getvalue().splitlines()
    assert "run   | alpha exited with status 0" in lines and "run   | beta exited with status 0" in lines
    assert not any(is_alive(pid) for pid in pids.values())


def test_more_restarts_than_allowed_stop_everything_with_a_report_and_exit_1() -> None:
    output = io.StringIO()
    children = [python_child("polite", POLITE), ChildSpec("crashy", (sys.executable, "-c", SELF_KILLING))]
    supervisor = Supervisor(children, output=output, stop_timeout_s=10, restart=QUICK)
    began = time.monotonic()
    assert run_supervised(supervisor) == 1
    assert time.monotonic() - began < 30
    lines = output.getvalue().splitlines()
    restarts = [line for line in lines if "restarting in" in line]
    assert restarts == [
        "run    | crashy exited with status -9; restarting in 0.2 s (restart 1 of 2 in 60 s)",
        "run    | crashy exited with status -9; restarting in 0.3 s (restart 2 of 2 in 60 s)",
    ]
    assert lines.count("crashy | up, about to be killed") == 3
    failed = next(i for i, line in enumerate(lines) if "FAILED" in line)
    why = r"crashy \(pid \d+\) exited with status -9 after 2 restarts within 60 s \(the limit is 2\)"
    assert re.fullmatch(rf"run    \| FAILED: {why}; stopping the others", lines[failed])
    assert lines[failed + 1 : failed + 3] == [
        "run    | last output of crashy:",
        "run    |   up, about to be killed",
    ]
    assert f"polite | got signal {int(signal.SIGTERM)}" in lines
    assert re.fullmatch(rf"run    \| stopped: {why}", lines[-1])


def test_a_child_exiting_with_status_2_is_not_restarted() -> None:
    output = io.StringIO()
    usage = ChildSpec("usage", (sys.executable, "-c", "print('bad flag', flush=True); raise SystemExit(2)"))
    supervisor = Supervisor([usage], output=output)
    assert run_supervised(supervisor) == 1
    text = output.getvalue()
    assert "restarting" not in text
    assert re.search(r"FAILED: usage \(pid \d+\) exited with status 2, a configuration or usage error", text)


def test_child_output_is_relayed_with_control_characters_escaped_but_tabs_kept() -> None:
    output = io.StringIO()
    source = "print('col1\\tcol2 \\x1b]0;pwned\\x07 \\u202eevil\\r', flush=True)"
    supervisor = Supervisor([ChildSpec("noisy", (sys.executable, "-c", source))], output=output)
    with supervisor:
        wait_for(lambda: "noisy | " in output.getvalue(), 10)
    line = next(line for line in output.getvalue().splitlines() if line.startswith("noisy | "))
    assert line == "noisy | col1\tcol2 \\x1b]0;pwned\\x07 \\u202eevil"


def test_stopping_cancels_a_pending_restart() -> None:
    output = io.StringIO()
    slow = RestartPolicy(max_restarts=1, window_s=60, backoff_s=30)
    supervisor = Supervisor([python_child("alpha", POLITE)], output=output, restart=slow)
    supervisor.start()
    try:
        wait_for(lambda: "| hello from alpha" in output.getvalue(), 10)
        os.kill(supervisor.pids()["alpha"], signal.SIGKILL)
        wait_for(lambda: "restarting in 30.0 s" in output.getvalue(), 10)
    finally:
        began = time.monotonic()
        supervisor.stop()
    assert time.monotonic() - began < 5
    assert "restarted" not in output.getvalue()
    assert output.getvalue().count("alpha | hello from alpha") == 1


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
    from mic_pipeline.ops.children import (
        PipelinePorts,
        pipeline_children,
        pipeline_groups,
        pipeline_health_endpoints,
    )

    settings = Settings(topic_prefix="t.")
    children = pipeline_children(settings, PipelinePorts(7000, 7100, 7200, None), stream_workers=3)
    streams = [child for child in children if child.name.startswith("streams")]
    assert [child.name for child in streams] == ["streams-0", "streams-1", "streams-2"]
    assert [child.environment["MIC_STREAMS_WEB_PORT"] for child in streams] == ["7000", "7001", "7002"]
    assert [child.name for child in children[3:]] == ["sink-sql", "sink-parquet"]
    with pytest.raises(ValueError):
        pipeline_children(settings, PipelinePorts(), stream_workers=0)
    endpoints = pipeline_health_endpoints(PipelinePorts(7000, 7100, 7200, 7300), stream_workers=2)
    assert [str(e) for e in endpoints] == [
        "streams-0=http://127.0.0.1:7000/health",
        "streams-1=http://127.0.0.1:7001/health",
        "sink-sql=http://127.0.0.1:7100/health/ready",
        "sink-parquet=http://127.0.0.1:7200/health/ready",
    ]
    groups = pipeline_groups(settings, {})
    ports = PipelinePorts(7000, 7100, 7200, 7300)
    web = pipeline_children(settings, ports, stream_workers=2, groups=groups)[-1]
    assert web.name == "web"
    assert web.environment["MIC_HEALTH_URLS"] == ",".join(str(e) for e in endpoints)
    # the page watches the pipeline's groups by name: one that never committed is judged too
    named = [web.command[i + 1] for i, argument in enumerate(web.command) if argument == "--group"]
    expected = [settings.topic(f"mic-{name}") for name in ("streams", "sink-sql", "sink-parquet")]
    assert named == groups == expected


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
        assert "restarting" not in log.read_text(), log.read_text()

        # `status` beside the run watches its children (from the run file), without being told
        probe = subprocess.run(
            [sys.executable, "-m", "mic_pipeline.cli", "status", "--json"],
            env=environment, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        components = {c["component"]: c for c in json.loads(probe.stdout)["components"]}
        assert set(components) == {"streams-0", "streams-1", "sink-sql", "sink-parquet"}, probe.stdout
        assert components["sink-sql"]["url"] == f"http://127.0.0.1:{ports[1]}/health/ready"
        assert components["sink-sql"]["status"] == "ready", components
        assert components["streams-0"]["status"] in ("ready", "not ready"), components  # it answered

        # kill -9 of the SQL sink: restarted after 1 s, ready again, the rest untouched
        os.kill(pids["sink-sql"], signal.SIGKILL)
        wait_for(lambda: "restarted sink-sql (pid" in log.read_text(), 30)
        text = log.read_text()
        assert "sink-sql exited with status -9; restarting in 1.0 s (restart 1 of 5 in 300 s)" in text
        pids["sink-sql (restarted)"] = int(re.findall(r"restarted sink-sql \(pid (\d+)\)", text)[0])
        wait_for(lambda: _ready(f"http://127.0.0.1:{ports[1]}/health/ready"), 60)
        assert process.poll() is None
        assert all(is_alive(pid) for name, pid in pids.items() if name != "sink-sql")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        _stop_run(process, log)
    text = log.read_text()
    assert "received SIGINT: stopping every child" in text
    assert "SIGKILL" not in text
    for name in ("streams-0", "streams-1", "sink-sql", "sink-parquet"):
        assert re.search(rf"run\s+\| {name} exited with status 0", text), text
    assert not any(is_alive(pid) for pid in pids.values())
    assert not (settings.state_dir / "run.json").exists()


def _stop_run(process: subprocess.Popen[bytes], log: Path) -> None:
    """Stop the run even when the test failed half-way: SIGTERM (forwarded to the children), then
    SIGKILL for the supervisor and any child it started (children run in their own sessions)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for pid in (int(p) for p in re.findall(r"(?:started \S+|restarted \S+) \(pid (\d+)\)", log.read_text())):
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _ready(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _partitions(port: int) -> list[int]:
    """The partitions a stream worker owns, from its /health (none while it does not answer)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            body = response.read()
    except urllib.error.HTTPError as not_ready:
        body = not_ready.read()
    except (urllib.error.URLError, OSError):
        return []
    partitions: list[int] = json.loads(body)["partitions"]
    return partitions


def test_run_rejects_a_restart_policy_it_cannot_follow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mic_pipeline.cli import main

    monkeypatch.setenv("MIC_STATE_DIR", str(tmp_path / "state"))
    assert main(["run", "--restart-window", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mic-pipeline run: error: restarts >= 0, a positive window and backoffs >= 0")
    assert not (tmp_path / "state" / "run.json").exists()
