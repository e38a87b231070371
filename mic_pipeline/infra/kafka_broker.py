"""A single-node Apache Kafka broker (KRaft, combined broker and controller) on loopback.

State lives in `<state_dir>/kafka/`: `server.properties` (rewritten on every start),
`data/` (the log directory, formatted on the first start), `logs/server.log` (the broker's
log4j2 output), `console.log` (the JVM's own stdout/stderr: crashes, GC errors) and
`broker.pid`. The broker listens on `host:port` for clients and on `host:port+1` for the
controller quorum; the JVM heap is capped at 512 MiB.

`start_broker` returns once the broker answers a metadata request (and lists itself, unfenced)
and a consumer-group coordinator is available (so `__consumer_offsets` exists), or raises
`BrokerError` carrying the tail of the broker's logs. `stop_broker` sends SIGTERM (Kafka's
controlled shutdown), waits, and falls back to SIGKILL after a timeout.

A secured broker (`BrokerConfig.secure`, `mic-pipeline kafka start --secure`) also has
`secrets/` (`kafka_secure`): its certificates, users and passwords; it is probed as `admin`.
`server.properties` (it holds the broker's own login) is written mode 0600. A state directory
formatted secured is never started plain, nor the other way round.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from mic_pipeline.config import Settings
from mic_pipeline.infra.kafka_config import BrokerConfig, new_cluster_id, render_server_properties
from mic_pipeline.infra.kafka_dist import LOG4J2_CONFIG_PATH, KafkaDistribution
from mic_pipeline.infra.kafka_probe import answers_metadata as answers_metadata  # re-exported
from mic_pipeline.infra.kafka_probe import not_ready_reason
from mic_pipeline.infra.kafka_secure import (
    ADMIN_USER,
    BROKER_USER,
    USERS,
    BrokerSecrets,
    format_arguments,
    provision,
    security_properties,
    write_env_files,
)
from mic_pipeline.infra.kafka_tls import write_private
from mic_pipeline.infra.processes import ProcessError, command_line, is_alive, terminate

HEAP_OPTS = ("-Xms128m", "-Xmx512m")
JVM_OPTS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true")
DEFAULT_START_TIMEOUT_S = 60.0
DEFAULT_STOP_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.25


class BrokerError(RuntimeError):
    """The broker could not be started, reached or stopped."""


@dataclass(frozen=True)
class BrokerPaths:
    """The files of one local broker under `<state_dir>/kafka`."""

    root: Path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> BrokerPaths:
        """The broker's paths inside a pipeline state directory."""
        return cls(state_dir.resolve() / "kafka")

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def secrets(self) -> BrokerSecrets:
        return BrokerSecrets.in_broker_dir(self.root)

    def probe_settings(self, config: BrokerConfig) -> Settings:
        """Client settings reaching this broker: plain, or as `admin` when it is secured."""
        plain = Settings(kafka_bootstrap=config.bootstrap)
        return self.secrets.settings(plain, ADMIN_USER) if config.secure else plain


def java_executable() -> str:
    """`$JAVA_HOME/bin/java` when JAVA_HOME is set, else `java` (from the PATH)."""
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def running_pid(paths: BrokerPaths) -> int | None:
    """The pid of this state directory's broker if it is running; removes a stale pid file."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _is_our_broker(pid, paths):
        return pid
    paths.pid_file.unlink(missing_ok=True)
    return None


def start_broker(
    dist: KafkaDistribution,
    paths: BrokerPaths,
    config: BrokerConfig,
    *,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    java: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> int:
    """Start the broker detached and wait until it is ready (see the module doc); returns its pid.

    `java` defaults to `$JAVA_HOME/bin/java`, else `java` on the PATH. If this state directory's
    broker is already running with the same configuration it is only waited for. Raises
    `BrokerError` when Java is missing, a port is taken, formatting fails, the JVM exits, or the
    broker is not ready within `timeout_s` (then it is killed); the message ends with the logs'
    tail.
    """
    java = _java(java)
    _check_same_security(paths, config)
    if config.secure:
        provision(paths.secrets, [config.host])
        write_env_files(paths.secrets, config.bootstrap)
    probe = paths.probe_settings(config)
    pid = running_pid(paths)
    if pid is not None:
        if paths.properties.read_text() != _properties(paths, config):
            raise BrokerError(
                f"this state directory's broker (pid {pid}) is already running with another "
                f"configuration ({paths.properties}); stop it first"
            )
        _wait_until_ready(probe, pid, paths, timeout_s, since={})
        return pid
    launched = launch_broker(dist, paths, config, java=java, progress=progress)
    try:
        _wait_until_ready(probe, launched.pid, paths, timeout_s, since=launched.since)
    except BrokerError:
        terminate(launched.pid, DEFAULT_STOP_TIMEOUT_S)
        paths.pid_file.unlink(missing_ok=True)
        raise
    return launched.pid


@dataclass(frozen=True)
class Launched:
    """A broker JVM started by `launch_broker`: its pid and its logs' sizes before (`log_tail`)."""

    pid: int
    since: dict[Path, int]


def launch_broker(
    dist: KafkaDistribution,
    paths: BrokerPaths,
    config: BrokerConfig,
    *,
    java: str | None = None,
    cluster_id: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Launched:
    """Start the broker's JVM detached, without waiting for it: its ports must be free; its
    `server.properties` is written and its storage formatted on first use (with `cluster_id`, the
    id every node of a cluster shares; a new one when None). Raises `BrokerError`."""
    java = _java(java)
    for port in (config.port, config.controller_port):
        _check_port_free(config.host, port)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(exist_ok=True)
    write_private(paths.properties, _properties(paths, config).encode())
    log_sizes = _log_sizes(paths)
    if not (paths.data / "meta.properties").is_file():
        progress(f"formatting broker storage in {paths.data}" + (" with users" if config.secure else ""))
        extra = format_arguments(paths.secrets) if config.secure else []
        _format_storage(dist, paths, java, extra, cluster_id or new_cluster_id())
    command = [
        java,
        *HEAP_OPTS,
        *JVM_OPTS,
        f"-Dkafka.logs.dir={paths.logs}",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG_PATH}",
        "-cp",
        dist.classpath,
        "kafka.Kafka",
        str(paths.properties),
    ]
    with paths.console_log.open("ab") as console:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            cwd=paths.root,
            start_new_session=True,
        )
    paths.pid_file.write_text(f"{process.pid}\n")
    return Launched(process.pid, log_sizes)


def _java(java: str | None) -> str:
    java = java or java_executable()
    if shutil.which(java) is None:
        raise BrokerError(f"Java ({java}) was not found; install a JDK 17+ or set JAVA_HOME")
    return java


class StopOutcome(StrEnum):
    """How `stop_broker` ended."""

    NOT_RUNNING = "not running"
    STOPPED = "stopped"
    KILLED = "killed after the timeout"


def stop_broker(paths: BrokerPaths, *, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> StopOutcome:
    """Stop this state directory's broker.

    SIGTERM first (a clean, controlled shutdown), SIGKILL if it has not exited after `timeout_s`.
    """
    pid = running_pid(paths)
    if pid is None:
        return StopOutcome.NOT_RUNNING
    try:
        killed = terminate(pid, timeout_s)
    except ProcessError as exc:
        raise BrokerError(str(exc)) from exc
    paths.pid_file.unlink(missing_ok=True)
    return StopOutcome.KILLED if killed else StopOutcome.STOPPED


def log_tail(paths: BrokerPaths, lines: int = 40, *, since: dict[Path, int] | None = None) -> str:
    """The last lines of the broker's log and of the JVM console output, for error messages.

    `since` maps a log file to the size it had before this start, so older runs are left out.
    """
    parts: list[str] = []
    for path in (paths.server_log, paths.console_log):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        skip = (since or {}).get(path, 0)
        tail = data[skip if skip <= len(data) else 0 :].decode(errors="replace").splitlines()[-lines:]
        if tail:
            parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(parts) if parts else f"(no broker log lines under {paths.root})"


def _log_sizes(paths: BrokerPaths) -> dict[Path, int]:
    sizes: dict[Path, int] = {}
    for path in (paths.server_log, paths.console_log):
        with contextlib.suppress(FileNotFoundError):
            sizes[path] = path.stat().st_size
    return sizes


def _properties(paths: BrokerPaths, config: BrokerConfig) -> str:
    if not config.secure:
        return render_server_properties(config, paths.data)
    security = security_properties(paths.secrets, config.client_listener, "CONTROLLER")
    return render_server_properties(config, paths.data, security)


def _check_same_security(paths: BrokerPaths, config: BrokerConfig) -> None:
    """A formatted data directory keeps its kind: its SCRAM users exist only if formatted secured."""
    if not (paths.data / "meta.properties").is_file():
        return
    secured = paths.secrets.exists()
    if secured and not config.secure:
        raise BrokerError(f"{paths.root} holds a secured broker: start it with --secure")
    if config.secure and not secured:
        raise BrokerError(f"{paths.root} holds a plain broker: use another MIC_STATE_DIR for --secure")


def _format_storage(
    dist: KafkaDistribution, paths: BrokerPaths, java: str, extra: list[str], cluster_id: str
) -> None:
    """`kafka-storage format`; its arguments go through a 0600 argument file (`java @file`): the
    SCRAM passwords in `extra` never appear on a command line."""
    arguments = [
        "-cp",
        dist.classpath,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(paths.properties),
        *extra,
    ]
    argument_file = paths.root / "format.args"
    write_private(argument_file, "\n".join(f'"{argument}"' for argument in arguments).encode())
    command = [
        java,
        "-Xmx256m",
        # a one-shot tool: the quick-starting compiler and collector save about a third (0.5 s)
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        f"-Dkafka.logs.dir={paths.logs}",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG_PATH}",
        f"@{argument_file}",
    ]
    try:
        completed = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
        )
    finally:
        argument_file.unlink(missing_ok=True)
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()
        if extra:
            for user in (*USERS, BROKER_USER):
                output = output.replace(paths.secrets.password(user), "***")
        raise BrokerError(f"formatting {paths.data} failed (exit {completed.returncode}):\n{output}")


def _wait_until_ready(
    settings: Settings, pid: int, paths: BrokerPaths, timeout_s: float, *, since: dict[Path, int]
) -> None:
    def not_ready() -> str | None:
        return not_ready_reason(settings, timeout_s=1.0, need_group_coordinator=True)

    where = f"the broker (pid {pid}) on {settings.kafka_bootstrap}"
    wait_for_brokers({pid: (paths, since)}, not_ready, timeout_s, where)


def wait_for_brokers(
    started: dict[int, tuple[BrokerPaths, dict[Path, int]]],
    not_ready: Callable[[], str | None],
    timeout_s: float,
    where: str,
) -> None:
    """Poll `not_ready` (None: ready) until the deadline; `BrokerError` with the logs' tail when one
    of the `started` brokers (pid -> paths, log sizes before the start) exits, or on the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        for pid, (paths, since) in started.items():
            if not is_alive(pid):
                tail = log_tail(paths, since=since)
                raise BrokerError(f"the broker (pid {pid}) exited during start-up\n{tail}")
        reason = not_ready()
        if reason is None:
            return
        if time.monotonic() >= deadline:
            tails = "\n".join(log_tail(paths, since=since) for paths, since in started.values())
            raise BrokerError(f"{where} was not ready within {timeout_s:.0f} s: {reason}\n{tails}")
        time.sleep(_POLL_INTERVAL_S)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BrokerError(f"port {host}:{port} is already in use ({exc.strerror})") from exc


def _is_our_broker(pid: int, paths: BrokerPaths) -> bool:
    arguments = command_line(pid)
    return "kafka.Kafka" in arguments and str(paths.properties) in arguments
