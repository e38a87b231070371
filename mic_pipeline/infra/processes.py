"""Small helpers for the detached server processes we start (Linux: they read `/proc`)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


class ProcessError(RuntimeError):
    """A process could not be stopped."""


def is_alive(pid: int) -> bool:
    """True while `pid` runs; reaps it if it is our exited child, and treats zombies as gone.

    A zombie main thread whose other threads still run is alive: after a kill -9 of a JVM (a broker)
    the main thread shows `Z` while the others are still exiting -- and still hold the process's
    sockets (a restart on the same port found it "already in use").
    """
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    if state == "X":
        return False
    if state == "Z":
        return _threads(pid) > 1
    return True


def _threads(pid: int) -> int:
    """How many threads `pid` still has (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def command_line(pid: int) -> list[str]:
    """The arguments `pid` was started with; empty when it is gone."""
    if not is_alive(pid):
        return []
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [argument.decode(errors="replace") for argument in raw.split(b"\0") if argument]


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` has exited; False if it still runs after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM `pid` and wait for it; SIGKILL it after `timeout_s`. True if it had to be killed.

    Raises `ProcessError` if it survives SIGKILL for 10 s.
    """
    _signal(pid, signal.SIGTERM)
    if wait_for_exit(pid, timeout_s):
        return False
    _signal(pid, signal.SIGKILL)
    if not wait_for_exit(pid, 10.0):
        raise ProcessError(f"process {pid} survived SIGKILL")
    return True


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def terminate_all(pids: list[int], timeout_s: float) -> set[int]:
    """SIGTERM every one of `pids` at once, wait up to `timeout_s` for all of them, SIGKILL those
    still running; the pids that had to be killed. Raises `ProcessError` if one survives SIGKILL."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    killed: set[int] = set()
    for pid in pids:
        if not wait_for_exit(pid, max(0.0, deadline - time.monotonic())):
            _signal(pid, signal.SIGKILL)
            killed.add(pid)
    for pid in killed:
        if not wait_for_exit(pid, 10.0):
            raise ProcessError(f"process {pid} survived SIGKILL")
    return killed


def kill(pid: int) -> None:
    """SIGKILL `pid` (kill -9) and wait until it is gone (`ProcessError` after 10 s)."""
    _signal(pid, signal.SIGKILL)
    if not wait_for_exit(pid, 10.0):
        raise ProcessError(f"process {pid} survived SIGKILL")
