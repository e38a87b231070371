"""The pipeline of a fault test as real processes: stream workers and both sinks, each a
`mic-pipeline` subprocess the test can kill -9, stop, pause (SIGSTOP) and resume (SIGCONT), and
restart. `Pipeline.close` stops (and waits for) every process it started, also when the test failed;
each process's output is kept in the test's directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams_kafka import free_port, wait_until

from mic_pipeline.config import Settings

STOP_TIMEOUT_S = 45.0
SINK_BATCH_ROWS = 500
SINK_BATCH_WAIT_S = 0.5


@dataclass
class Proc:
    """One `mic-pipeline` subprocess: a stream worker or a sink."""

    name: str
    kind: str
    """`streams`, `sql` or `parquet`."""
    arguments: tuple[str, ...]
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    paused: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9, and wait for it."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and state but does nothing (a long GC pause, a
        frozen VM)."""
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """A graceful stop (SIGTERM), kill -9 after `timeout_s`; the exit status."""
        if self.paused:
            self.resume()
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        status: int = self.process.wait(timeout=30)
        return status

    def get(self, path: str) -> tuple[int, Any]:
        """HTTP GET on the process's port: (status, JSON document); (0, None) when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")
        except (OSError, ValueError):
            return 0, None

    def aggregates(self) -> dict[str, Any]:
        status, document = self.get("/aggregates")
        assert status == 200, f"{self.name}: /aggregates answered {status}"
        assert isinstance(document, dict)
        return document

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Pipeline:
    """Starts the processes of one test; `close` stops every one of them."""

    settings: Settings
    directory: Path
    env: dict[str, str] = field(default_factory=dict)
    started: list[Proc] = field(default_factory=list)
    sink_arguments: tuple[str, ...] = ()

    def environment(self, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
        settings = self.settings
        return {
            **os.environ,
            "MIC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "MIC_TOPIC_PREFIX": settings.topic_prefix,
            "MIC_WAREHOUSE_DIR": str(settings.warehouse_dir),
            "MIC_DATABASE_URL": settings.database_url,
            "MIC_STATE_DIR": str(settings.state_dir),
            "MIC_PARTITIONS": str(settings.partitions),
            "MIC_STREAMS_WEB_PORT": str(port),
            # longer than a worker's restart and catch-up here: a valid event must not expire
            "MIC_STREAMS_MEMBER_WAIT_S": "30",
            "MIC_STREAMS_RECHECK_S": "0.25",
            "MIC_STREAMS_SNAPSHOT_S": "1.0",
            **self.env,
            **(extra or {}),
        }

    def _spawn(
        self, kind: str, arguments: tuple[str, ...], port: int, extra: dict[str, str] | None = None
    ) -> Proc:
        number = sum(1 for proc in self.started if proc.kind == kind)
        name = f"{kind}-{number}"
        log = self.directory / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "mic_pipeline.cli", *arguments],
                env=self.environment(port, extra),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(name, kind, arguments, process, port, log)
        self.started.append(proc)
        return proc

    def start_worker(self, *, ready_timeout_s: float = 120.0, env: dict[str, str] | None = None) -> Proc:
        """A stream worker, once it serves `/aggregates` (`env`: variables of this worker only)."""
        return self.wait_started(self.spawn_worker(env=env), ready_timeout_s)

    def start_sink(self, kind: str, *, ready_timeout_s: float = 120.0) -> Proc:
        """A sink (`sql` or `parquet`) of the pipeline's group, once it serves `/health/live`."""
        return self.wait_started(self.spawn_sink(kind), ready_timeout_s)

    def spawn_worker(self, *, env: dict[str, str] | None = None) -> Proc:
        """A stream worker, started but not waited for (`wait_started`): several processes start
        together, each spawned in turn."""
        port = free_port()
        return self._spawn("streams", ("streams", "--web-port", str(port), "--loglevel", "info"), port, env)

    def spawn_sink(self, kind: str) -> Proc:
        """A sink (`sql` or `parquet`) of the pipeline's group, started but not waited for."""
        port = free_port()
        arguments = (
            "sink",
            kind,
            "--group-id",
            self.settings.topic(f"mic-sink-{kind}"),
            "--metrics-port",
            str(port),
            "--max-batch-rows",
            str(SINK_BATCH_ROWS),
            "--max-batch-wait",
            str(SINK_BATCH_WAIT_S),
            *self.sink_arguments,
        )
        return self._spawn(kind, arguments, port)

    def wait_started(self, proc: Proc, ready_timeout_s: float = 120.0) -> Proc:
        """Until `proc` serves: `/aggregates` for a stream worker, `/health/live` for a sink."""
        path = "/aggregates" if proc.kind == "streams" else "/health/live"
        wait_until(lambda: _answers(proc, path), ready_timeout_s, f"{proc.name} did not start")
        return proc

    def start_all(self) -> tuple[Proc, Proc, Proc]:
        """A worker and both sinks."""
        return self.start_worker(), self.start_sink("sql"), self.start_sink("parquet")

    def restart(self, proc: Proc) -> Proc:
        """Start a new process of the same kind (after `proc` was killed or stopped)."""
        assert not proc.alive, f"{proc.name} still runs"
        return self.start_worker() if proc.kind == "streams" else self.start_sink(proc.kind)

    @property
    def workers(self) -> list[Proc]:
        return [proc for proc in self.started if proc.kind == "streams" and proc.alive and not proc.paused]

    def check_alive(self) -> None:
        """Fail (with its output) if a process that should run has exited."""
        for proc in self.started:
            if proc.process.poll() is not None and proc.process.returncode not in (0, -9, -15):
                raise AssertionError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.tail()}")

    def close(self) -> dict[str, int]:
        """Stop every process started (resumed first when paused); their exit statuses."""
        statuses: dict[str, int] = {}
        for proc in self.started:
            if proc.paused:
                proc.resume()
        for proc in self.started:
            if proc.alive:
                proc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.started:
            try:
                proc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
            statuses[proc.name] = proc.process.wait(timeout=30)
        return statuses


def _answers(proc: Proc, path: str) -> bool:
    if not proc.alive:
        raise AssertionError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.tail()}")
    status, _ = proc.get(path)
    return status == 200
