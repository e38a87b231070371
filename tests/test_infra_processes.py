"""`mic_pipeline.infra.processes.is_alive`: a process is gone only once every thread is.

Found by the hard rolling restart on three brokers: after a kill -9, the broker's JVM main thread
showed `Z` while its other threads were still exiting, `is_alive` said gone, and the restart on the
same port failed ("already in use"). Here the main thread of a child exits alone (the `exit`
system call, not `exit_group`) while a second thread keeps a listening socket.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from faults_cluster import _free as free_port_at
from streams_kafka import wait_until

from mic_pipeline.infra.processes import is_alive

SYS_EXIT = {"x86_64": 60, "aarch64": 93}.get(platform.machine())

CHILD = """
import ctypes, os, socket, sys, threading, time
release, ready = sys.argv[1], sys.argv[2]
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
def hold():
    while not os.path.exists(release):
        time.sleep(0.05)
    server.close()
    os._exit(0)
threading.Thread(target=hold).start()
with open(ready, "w") as out:
    out.write(str(server.getsockname()[1]))
ctypes.CDLL(None, use_errno=True).syscall(int(sys.argv[3]), 0)  # only the main thread exits
"""


def _bound(port: int) -> bool:
    return not free_port_at(port)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(SYS_EXIT is None, reason=f"no exit system call number for {platform.machine()}")
def test_a_zombie_main_thread_with_live_threads_is_alive_until_the_last_thread_exits(tmp_path: Path) -> None:
    release, ready = tmp_path / "release", tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(release), str(ready), str(SYS_EXIT)])
    try:
        wait_until(lambda: ready.exists() and ready.read_text() != "", 30, "the child's socket")
        port = int(ready.read_text())
        wait_until(lambda: _state(child.pid) == "Z", 30, "the child's main thread to exit alone")
        assert _bound(port), "the live thread still holds the socket"
        assert is_alive(child.pid), "a zombie main thread with a live thread is a running process"
        release.touch()
        wait_until(lambda: not is_alive(child.pid), 30, "the child to be gone once its last thread exits")
        assert not _bound(port)
    finally:
        release.touch()
        child.wait(30)
