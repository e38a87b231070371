"""Child processes of the bench: started with a log file, watched for their peak RSS, always stopped.

Peak RSS is the kernel's high-water mark of the process's resident set, `VmHWM` in
`/proc/<pid>/status` (Linux); it is read while the process lives (a reaped process has no status),
so `Child.stop` samples it before stopping the process. Every child started through `Children`
is stopped (SIGINT, then SIGKILL after a timeout) and waited for when the block ends, whatever
happened inside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

STOP_TIMEOUT_S = 60.0
LOG_TAIL_BYTES = 3000


class BenchError(RuntimeError):
    """A stage could not be measured (a child died, a deadline passed, a result is missing)."""


def peak_rss_kib(pid: int) -> int | None:
    """`VmHWM` of a live process in KiB; None when the process is gone (or is a zombie)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (`/proc/<pid>/stat`), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last `limit` bytes of a log file, decoded leniently."""
    if not path.exists():
        return "(no log)"
    data = path.read_bytes()
    return data[-limit:].decode("utf-8", "replace")


@dataclass
class Child:
    """One child process of a stage."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    peak_kib: int = 0
    cpu_s: float = 0.0
    stopped: bool = False
    interrupted_at: float | None = None
    stop_s: float | None = None
    """How long the graceful stop took (None while running or if it had exited by itself)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def sample(self) -> None:
        """Take the current high-water mark of the resident set (kept if higher than before)."""
        if self.process.poll() is None:
            peak = peak_rss_kib(self.pid)
            if peak is not None:
                self.peak_kib = max(self.peak_kib, peak)
            cpu = cpu_seconds(self.pid)
            if cpu is not None:
                self.cpu_s = max(self.cpu_s, cpu)

    def ensure_running(self) -> None:
        """Raise `BenchError` with the end of its log if the process has exited."""
        code = self.process.poll()
        if code is not None and not self.stopped:
            raise BenchError(
                f"{self.name} (pid {self.pid}) exited with status {code}; end of {self.log}:\n"
                f"{log_tail(self.log)}"
            )

    def interrupt(self) -> None:
        """Sample the peak RSS, then ask the process to stop (SIGINT: a graceful stop)."""
        self.sample()
        self.stopped = True
        if self.process.poll() is None:
            self.interrupted_at = time.monotonic()
            self.process.send_signal(signal.SIGINT)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Wait for the interrupted process, SIGKILL after `timeout_s`; note how long it took."""
        began = self.interrupted_at
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)
        if began is not None:
            self.stop_s = time.monotonic() - began

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """`interrupt`, then `wait`."""
        self.interrupt()
        self.wait(timeout_s)

    def figures(self) -> dict[str, object]:
        """Name, pid, peak RSS in MiB and CPU seconds used (at the last sample), for the results."""
        return {
            "name": self.name,
            "pid": self.pid,
            "peak_rss_mib": round(self.peak_kib / 1024, 1),
            "cpu_s": round(self.cpu_s, 2),
            "stop_s": None if self.stop_s is None else round(self.stop_s, 2),
        }


@dataclass
class Children:
    """Starts the children of one stage into `directory` (their logs) and stops all of them on exit."""

    directory: Path
    started: list[Child] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Child:
        """Start `argv` (in `cwd`, default ours) with its output in `<directory>/<name>.log`, in its own
        session (a Ctrl-C at the terminal reaches the bench, which then stops its children in order)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.started.append(child)
        return child

    def sample(self) -> None:
        """Sample every live child's peak RSS and raise if one has exited unasked."""
        for child in self.started:
            child.sample()
            child.ensure_running()

    def stop_all(self) -> None:
        """Interrupt every child (all at once: their graceful stops overlap), then wait for each."""
        problems: list[BaseException] = []
        for child in self.started:
            try:
                child.interrupt()
            except OSError as error:
                problems.append(error)
        for child in self.started:
            try:
                child.wait()
            except (OSError, subprocess.SubprocessError) as error:
                problems.append(error)
        if problems:
            raise BenchError(f"could not stop every child: {problems}")

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


def python_module(module: str, *args: str) -> list[str]:
    """The command line running `module` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def wait_for(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    children: Children | None = None,
    interval_s: float = 0.25,
) -> float:
    """Poll `condition` every `interval_s` until true; returns the monotonic time it became true.

    Raises `BenchError` naming `what` after `timeout_s`, or as soon as a child of `children` exits.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return time.monotonic()
        if children is not None:
            children.sample()
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment with `overrides`."""
    return {**os.environ, **overrides}
