"""`mic-pipeline run`: the stream worker and both sinks (and optionally the operators' web page) as child
processes of one supervisor, for local use.

Contract:
- every child runs with the supervisor's environment plus the overrides of its `ChildSpec` (so all
  share `MIC_KAFKA_BOOTSTRAP`, `MIC_TOPIC_PREFIX`, ...), in its own session (a terminal's Ctrl-C
  reaches only the supervisor, which forwards it);
- each child's stdout and stderr lines are written to one output stream, prefixed `name | `;
- SIGTERM or SIGINT to the supervisor is forwarded (the same signal) to every child; children that have
  not exited `stop_timeout_s` later get SIGKILL;
- a child that exits while nobody asked it to is a failure: the others are stopped the same way and the
  supervisor exits 1. There are no restarts: the stream and the sinks already retry transient failures
  (broker or database down) inside the process, so a child that dies has met something a restart would
  only repeat; restarting belongs to the orchestrator (docker-compose's `restart:` policy, systemd).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from mic_pipeline.config import Settings

DEFAULT_STOP_TIMEOUT_S = 20.0
DEFAULT_STREAMS_PORT = 6066
DEFAULT_SQL_METRICS_PORT = 9101
DEFAULT_PARQUET_METRICS_PORT = 9102


@dataclass(frozen=True)
class ChildSpec:
    """One child: its name (the log prefix), command line, extra environment and the URL that answers
    200 once it is ready (None: ready once started)."""

    name: str
    command: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    health_url: str | None = None


def mic_command(*arguments: str) -> tuple[str, ...]:
    """The command line of `mic-pipeline ARGUMENTS` run by this interpreter."""
    return (sys.executable, "-m", "mic_pipeline.cli", *arguments)


def settings_environment(settings: Settings) -> dict[str, str]:
    """The `MIC_*` variables that make a child's `Settings.from_env()` equal `settings`."""
    return {
        "MIC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "MIC_WAREHOUSE_DIR": str(settings.warehouse_dir),
        "MIC_DATABASE_URL": settings.database_url,
        "MIC_TOPIC_PREFIX": settings.topic_prefix,
        "MIC_PARTITIONS": str(settings.partitions),
        "MIC_STATE_DIR": str(settings.state_dir),
        "MIC_CACHE_DIR": str(settings.cache_dir),
    }


@dataclass(frozen=True)
class PipelinePorts:
    """The HTTP ports of the pipeline's children (web None: no web page)."""

    streams: int = DEFAULT_STREAMS_PORT
    sql_metrics: int = DEFAULT_SQL_METRICS_PORT
    parquet_metrics: int = DEFAULT_PARQUET_METRICS_PORT
    web: int | None = None


def pipeline_groups(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """The consumer groups of the children of `pipeline_children` run with `environ`: the stream's
    (its faust app id, `MIC_STREAMS_APP_ID` or `<prefix>mic-streams`) and the two sinks'."""
    from streams.settings import StreamSettings

    app_id = StreamSettings.from_env(settings, dict(environ)).app_id
    return [app_id, *(settings.topic(f"mic-sink-{kind}") for kind in ("sql", "parquet"))]


def pipeline_children(
    settings: Settings,
    ports: PipelinePorts,
    *,
    member_wait_s: float | None = None,
    sink_arguments: Sequence[str] = (),
    stream_workers: int = 1,
) -> list[ChildSpec]:
    """The stream workers, the SQL and Parquet sinks and (when `ports.web`) the web page.

    `stream_workers` processes share the stream's consumer group (faust spreads the partitions over
    them); worker i serves HTTP on `ports.streams + i`, and any of them answers for all partitions.

    The sinks' consumer groups get the topic prefix (`<prefix>mic-sink-sql`), so runs with different
    prefixes never share a group; without a prefix they are the sinks' default groups.
    """
    if stream_workers < 1:
        raise ValueError(f"stream_workers must be >= 1, got {stream_workers}")
    children = []
    for i in range(stream_workers):
        port = ports.streams + i
        streams_args = ["streams", "--web-port", str(port)]
        if member_wait_s is not None:
            streams_args += ["--member-wait", str(member_wait_s)]
        children.append(
            ChildSpec(
                "streams" if stream_workers == 1 else f"streams-{i}",
                mic_command(*streams_args),
                {"MIC_STREAMS_WEB_PORT": str(port)},
                f"http://127.0.0.1:{port}/health",
            )
        )
    for kind, port in (("sql", ports.sql_metrics), ("parquet", ports.parquet_metrics)):
        arguments = (
            "sink",
            kind,
            "--group-id",
            settings.topic(f"mic-sink-{kind}"),
            "--metrics-port",
            str(port),
        )
        children.append(
            ChildSpec(
                f"sink-{kind}",
                mic_command(*arguments, *sink_arguments),
                {},
                f"http://127.0.0.1:{port}/health",
            )
        )
    if ports.web is not None:
        streams_url = f"http://127.0.0.1:{ports.streams}/aggregates"
        children.append(
            ChildSpec(
                "web",
                mic_command("web", "--port", str(ports.web), "--streams-url", streams_url),
                {},
                f"http://127.0.0.1:{ports.web}/health/live",
            )
        )
    return children


class ChildDied(RuntimeError):
    """A child exited while the supervisor had not asked it to."""


@dataclass
class _Running:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    relay: threading.Thread


class Supervisor:
    """Starts the children, relays their output, notices deaths, stops them all (see the module doc).

    Use as a context manager: leaving it stops every child.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        base_environment: Mapping[str, str] | None = None,
        output: IO[str] | None = None,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
    ) -> None:
        self.children = list(children)
        self.base_environment = dict(os.environ if base_environment is None else base_environment)
        self.output = output if output is not None else sys.stdout
        self.stop_timeout_s = stop_timeout_s
        self.stopping = False
        self.killed: list[str] = []
        self._running: list[_Running] = []
        self._write_lock = threading.Lock()
        self._width = max((len(spec.name) for spec in self.children), default=0)

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every child (in order)."""
        for spec in self.children:
            environment = {**self.base_environment, **spec.environment, "PYTHONUNBUFFERED": "1"}
            process = subprocess.Popen(
                list(spec.command),
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            relay = threading.Thread(
                target=self._relay, args=(spec.name, process), name=f"relay:{spec.name}", daemon=True
            )
            relay.start()
            self._running.append(_Running(spec, process, relay))
            self.note(f"started {spec.name} (pid {process.pid}): {_shown(spec.command)}")

    def note(self, message: str) -> None:
        """Write one line of the supervisor's own to the output."""
        self._write("run", message)

    def pids(self) -> dict[str, int]:
        """The pid of each started child by name."""
        return {running.spec.name: running.process.pid for running in self._running}

    def check(self) -> None:
        """Raise `ChildDied` if a child has exited although no stop was requested."""
        if self.stopping:
            return
        for running in self._running:
            code = running.process.poll()
            if code is not None:
                raise ChildDied(f"{running.spec.name} (pid {running.process.pid}) exited with status {code}")

    def wait_ready(self, timeout_s: float, interval_s: float = 0.5) -> None:
        """Wait until every child's health URL answers 200; raises `ChildDied` if one dies meanwhile
        and `TimeoutError` naming the children still not ready after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        waiting = [r.spec for r in self._running if r.spec.health_url is not None]
        while waiting:
            self.check()
            waiting = [spec for spec in waiting if not _answers_ok(spec.health_url)]
            if not waiting:
                return
            if time.monotonic() >= deadline:
                names = ", ".join(spec.name for spec in waiting)
                raise TimeoutError(f"not ready after {timeout_s:.0f} s: {names}")
            time.sleep(interval_s)

    def wait(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        """Block until `stop` is set; raises `ChildDied` as soon as a child dies."""
        while not stop.wait(interval_s):
            self.check()

    def signal_all(self, signum: int) -> None:
        """Send `signum` to every child still running (marks the supervisor as stopping)."""
        self.stopping = True
        for running in self._running:
            if running.process.poll() is None:
                try:
                    running.process.send_signal(signum)
                except ProcessLookupError:
                    continue

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Signal every child with `signum`, wait up to `stop_timeout_s`, SIGKILL the rest; idempotent."""
        self.signal_all(signum)
        deadline = time.monotonic() + self.stop_timeout_s
        for running in self._running:
            try:
                running.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.note(
                    f"{running.spec.name} still running {self.stop_timeout_s:.0f} s after the signal: SIGKILL"
                )
                running.process.kill()
                running.process.wait(timeout=10)
                self.killed.append(running.spec.name)
        for running in self._running:
            running.relay.join(timeout=5)
        for running in self._running:
            if running.spec.name not in self.killed:
                self.note(f"{running.spec.name} exited with status {running.process.returncode}")
        self._running = [r for r in self._running if r.process.poll() is None]

    def _relay(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            self._write(name, raw.decode("utf-8", "replace").rstrip("\n"))
        process.stdout.close()

    def _write(self, name: str, line: str) -> None:
        with self._write_lock:
            self.output.write(f"{name:<{self._width}} | {line}\n")
            self.output.flush()


def _shown(command: Sequence[str]) -> str:
    """A command line for the log, `mic-pipeline ...` for our own."""
    if tuple(command[:3]) == mic_command():
        return shlex.join(("mic-pipeline", *command[3:]))
    return shlex.join(command)


def _answers_ok(url: str | None) -> bool:
    if url is None:
        return True
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def run_supervised(supervisor: Supervisor, ready_timeout_s: float | None = None) -> int:
    """Run `supervisor` until SIGTERM/SIGINT (forwarded to the children) or until a child dies.

    Returns 0 after a requested stop, 1 when a child died (or was not ready within `ready_timeout_s`).
    Installs signal handlers, so call it from the main thread.
    """
    stop = threading.Event()
    received: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            supervisor.start()
            if ready_timeout_s is not None:
                supervisor.wait_ready(ready_timeout_s)
                supervisor.note("every child is ready")
            supervisor.wait(stop)
        except (ChildDied, TimeoutError) as error:
            supervisor.note(f"FAILED: {error}; stopping the others")
            supervisor.stop()
            return 1
        except BaseException:
            supervisor.stop()
            raise
        signum = received[0] if received else signal.SIGTERM
        supervisor.note(f"received {signal.Signals(signum).name}: stopping every child")
        supervisor.stop(signum)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
