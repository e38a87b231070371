"""`mic-pipeline run`: the stream worker and both sinks (and optionally the operators' web page) as child
processes of one supervisor, the main job on one machine.

Contract:
- every child runs with the supervisor's environment plus the overrides of its `ChildSpec` (so all
  share `MIC_KAFKA_BOOTSTRAP`, `MIC_TOPIC_PREFIX`, ...), in its own session (a terminal's Ctrl-C
  reaches only the supervisor, which forwards it);
- each child's stdout and stderr lines are written to one output stream, prefixed `name | `, with
  control characters escaped (`mic_pipeline.text.printable`, TAB kept): a child may log event data;
- a child that exits while nobody asked it to (a crash, an OOM kill, `kill -9`) is restarted after a
  backoff that doubles from `RestartPolicy.backoff_s` up to `max_backoff_s`, and each restart is
  logged: `sink-sql exited with status -9; restarting in 2.0 s (restart 2 of 5 in 300 s)`. The
  other children keep running meanwhile: the stream and the sinks resume from their committed
  offsets, so a restart loses nothing and repeats at most the uncommitted batch (which the sinks
  upsert and the stream de-duplicates);
- restarts are bounded: a child that exits more than `max_restarts` times within `window_s` seconds
  meets something a restart only repeats (a bug on a record, a full disk the process cannot
  survive), so the supervisor stops every child and exits 1 with the child, its last exit status
  and its last output lines. A child that exits with status 2 (a configuration or usage error) is
  not restarted either. `RestartPolicy(max_restarts=0)` restores "any death stops the run";
- SIGTERM or SIGINT to the supervisor is forwarded (the same signal) to every child; children that have
  not exited `stop_timeout_s` later get SIGKILL; a pending restart is cancelled.
"""

from __future__ import annotations

import collections
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

from mic_pipeline.ops.children import ChildSpec, mic_command
from mic_pipeline.text import printable

DEFAULT_STOP_TIMEOUT_S = 20.0
EXIT_CONFIGURATION = 2
"""A child's exit status that means "fix the command or the configuration": never restarted."""
LAST_LINES_KEPT = 5


@dataclass(frozen=True)
class RestartPolicy:
    """How often a crashed child is restarted: at most `max_restarts` times within `window_s`
    seconds, the n-th of them after `backoff_s * 2**(n-1)` seconds (at most `max_backoff_s`)."""

    max_restarts: int = 5
    window_s: float = 300.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.window_s <= 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError(f"restarts >= 0, a positive window and backoffs >= 0, got {self}")

    def delay(self, restart: int) -> float:
        """Seconds before the `restart`-th restart within the window (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (restart - 1)))


class ChildDied(RuntimeError):
    """A child exited and will not be restarted: `child` names it, `last_lines` is its last output."""

    def __init__(self, message: str, child: str = "", last_lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.child = child
        self.last_lines = tuple(last_lines)


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    relays: list[threading.Thread] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)
    """Monotonic times of the restarts within the policy's window."""
    restart_at: float | None = None
    exited_alone: bool = False
    """The current process exited by itself (already reported), not at the supervisor's request."""
    last_lines: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=LAST_LINES_KEPT)
    )


class Supervisor:
    """Starts the children, relays their output, restarts the ones that crash (within the policy),
    stops them all (see the module doc). Use as a context manager: leaving it stops every child.

    A monitor thread watches the children from `start()` to `stop()`; `check()` (and `wait`,
    `wait_ready`) raise `ChildDied` once a child will not be restarted.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        base_environment: Mapping[str, str] | None = None,
        output: IO[str] | None = None,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
        restart: RestartPolicy | None = None,
        monitor_interval_s: float = 0.1,
    ) -> None:
        self.children = list(children)
        self.base_environment = dict(os.environ if base_environment is None else base_environment)
        self.output = output if output is not None else sys.stdout
        self.stop_timeout_s = stop_timeout_s
        self.restart = RestartPolicy() if restart is None else restart
        self.monitor_interval_s = monitor_interval_s
        self.stopping = False
        self.killed: list[str] = []
        self.failure: ChildDied | None = None
        self._running: list[_Child] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._monitor: threading.Thread | None = None
        self._width = max((len(spec.name) for spec in self.children), default=0)

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every child (in order), then the monitor."""
        with self._lock:
            for spec in self.children:
                child = _Child(spec, self._spawn(spec))
                self._relay_output(child)
                self._running.append(child)
                self.note(f"started {spec.name} (pid {child.process.pid}): {_shown(spec.command)}")
        self._monitor = threading.Thread(target=self._watch, name="run-monitor", daemon=True)
        self._monitor.start()

    def _spawn(self, spec: ChildSpec) -> subprocess.Popen[bytes]:
        environment = {**self.base_environment, **spec.environment, "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(
            list(spec.command),
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _relay_output(self, child: _Child) -> None:
        relay = threading.Thread(
            target=self._relay, args=(child, child.process), name=f"relay:{child.spec.name}", daemon=True
        )
        relay.start()
        child.relays.append(relay)

    def note(self, message: str) -> None:
        """Write one line of the supervisor's own to the output."""
        self._write("run", message)

    def pids(self) -> dict[str, int]:
        """The pid of each child's current process by name."""
        with self._lock:
            return {child.spec.name: child.process.pid for child in self._running}

    def check(self) -> None:
        """Raise `ChildDied` if a child exited and will not be restarted."""
        if self.failure is not None:
            raise self.failure

    # -- the monitor ------------------------------------------------------------------------------

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self.stopping or self.failure is not None:
                    return
                now = time.monotonic()
                for child in self._running:
                    self._look_after(child, now)
                    if self.failure is not None:
                        return
            time.sleep(self.monitor_interval_s)

    def _look_after(self, child: _Child, now: float) -> None:
        """One child's turn of the monitor (called with the lock held)."""
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restart_at = None
                child.exited_alone = False
                child.process = self._spawn(child.spec)
                self._relay_output(child)
                self.note(f"restarted {child.spec.name} (pid {child.process.pid})")
            return
        if child.exited_alone:
            return
        code = child.process.poll()
        if code is None:
            return
        child.exited_alone = True
        name, policy = child.spec.name, self.restart
        child.restarts = [t for t in child.restarts if now - t < policy.window_s]
        exited = f"{name} (pid {child.process.pid}) exited with status {code}"
        if code == EXIT_CONFIGURATION:
            self._give_up(child, f"{exited}, a configuration or usage error that a restart would repeat")
        elif len(child.restarts) >= policy.max_restarts:
            self._give_up(child, exited + _limit_note(policy, len(child.restarts)))
        else:
            restart = len(child.restarts) + 1
            delay = policy.delay(restart)
            child.restarts.append(now)
            child.restart_at = now + delay
            self.note(
                f"{name} exited with status {code}; restarting in {delay:.1f} s "
                f"(restart {restart} of {policy.max_restarts} in {policy.window_s:g} s)"
            )

    def _give_up(self, child: _Child, message: str) -> None:
        self.failure = ChildDied(message, child.spec.name, tuple(child.last_lines))

    # -- waiting ----------------------------------------------------------------------------------

    def wait_ready(self, timeout_s: float, interval_s: float = 0.5) -> None:
        """Wait until every child's health URL answers 200; raises `ChildDied` if a child dies for
        good meanwhile and `TimeoutError` naming the children still not ready (and why, when their
        health answer says) after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        waiting = [spec for spec in self.children if spec.health_url is not None]
        while waiting:
            self.check()
            answers = {spec.name: _readiness(spec.health_url) for spec in waiting}
            waiting = [spec for spec in waiting if answers[spec.name] is not None]
            if not waiting:
                return
            if time.monotonic() >= deadline:
                names = ", ".join(f"{spec.name} ({answers[spec.name]})" for spec in waiting)
                raise TimeoutError(f"not ready after {timeout_s:.0f} s: {names}")
            time.sleep(interval_s)

    def wait(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        """Block until `stop` is set; raises `ChildDied` as soon as a child dies for good."""
        while not stop.wait(interval_s):
            self.check()

    # -- stopping ---------------------------------------------------------------------------------

    def signal_all(self, signum: int) -> None:
        """Send `signum` to every child still running (marks the supervisor as stopping: no more
        restarts)."""
        with self._lock:
            self.stopping = True
            for child in self._running:
                child.restart_at = None
                if child.process.poll() is None:
                    try:
                        child.process.send_signal(signum)
                    except ProcessLookupError:
                        continue

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Signal every child with `signum`, wait up to `stop_timeout_s`, SIGKILL the rest; idempotent."""
        self.signal_all(signum)
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)
        deadline = time.monotonic() + self.stop_timeout_s
        for child in self._running:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.note(
                    f"{child.spec.name} still running {self.stop_timeout_s:.0f} s after the signal: SIGKILL"
                )
                child.process.kill()
                child.process.wait(timeout=10)
                self.killed.append(child.spec.name)
        for child in self._running:
            for relay in child.relays:
                relay.join(timeout=5)
        for child in self._running:
            if child.spec.name not in self.killed and not child.exited_alone:
                self.note(f"{child.spec.name} exited with status {child.process.returncode}")
            child.exited_alone = True
        self._running = [c for c in self._running if c.process.poll() is None]

    # -- output -----------------------------------------------------------------------------------

    def _relay(self, child: _Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            line = printable(raw.decode("utf-8", "replace").rstrip("\r\n"), keep_tab=True)
            child.last_lines.append(line)
            self._write(child.spec.name, line)
        process.stdout.close()

    def _write(self, name: str, line: str) -> None:
        """One line, escaped (a note can quote a command line or a health reason)."""
        with self._write_lock:
            self.output.write(f"{name:<{self._width}} | {printable(line, keep_tab=True)}\n")
            self.output.flush()


def _limit_note(policy: RestartPolicy, restarts: int) -> str:
    if policy.max_restarts == 0:
        return " (restarts are off)"
    return f" after {restarts} restarts within {policy.window_s:g} s (the limit is {policy.max_restarts})"


def _shown(command: Sequence[str]) -> str:
    """A command line for the log, `mic-pipeline ...` for our own."""
    if tuple(command[:3]) == mic_command():
        return shlex.join(("mic-pipeline", *command[3:]))
    return shlex.join(command)


def _readiness(url: str | None) -> str | None:
    """None when `url` answers 200 (or there is none), else why not in a few words."""
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as answer:
        import json

        try:
            reasons = json.loads(answer.read(64 * 1024)).get("reasons")
        except (ValueError, AttributeError):
            reasons = None
        detail = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else ""
        return f"HTTP {answer.code}" + (f": {detail}" if detail else "")
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"{getattr(error, 'reason', None) or error}"


def run_supervised(supervisor: Supervisor, ready_timeout_s: float | None = None) -> int:
    """Run `supervisor` until SIGTERM/SIGINT (forwarded to the children) or until a child dies for
    good (see the module docstring).

    Returns 0 after a requested stop, 1 when a child died for good (or was not ready within
    `ready_timeout_s`); the last line written then says which child and why.
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
            _report_failure(supervisor, error)
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


def _report_failure(supervisor: Supervisor, error: ChildDied | TimeoutError) -> None:
    supervisor.note(f"FAILED: {error}; stopping the others")
    if isinstance(error, ChildDied) and error.last_lines:
        supervisor.note(f"last output of {error.child}:")
        for line in error.last_lines:
            supervisor.note(f"  {line}")
    supervisor.stop()
    supervisor.note(f"stopped: {error}")
