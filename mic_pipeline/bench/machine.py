"""Machine facts and versions for the results: CPU, cores, memory, load, libraries, broker, commit."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = (
    "faust-streaming", "aiokafka", "kafka-python", "quixstreams", "confluent-kafka", "rocksdict",
    "msgspec", "sqlalchemy", "psycopg", "pyarrow", "great-expectations",
)  # fmt: skip
REPOSITORY = Path(__file__).resolve().parents[2]


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    raise ValueError("no MemTotal in /proc/meminfo")


def versions() -> dict[str, str]:
    """Python and the libraries the stages use (`not installed` where absent)."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_commit() -> str:
    """HEAD of the checkout, with `+dirty` when tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError) as error:
        return f"unknown ({error})"
    return f"{commit}+dirty" if dirty else commit


def broker_version(bootstrap: str) -> str:
    """The Kafka version of the broker at `bootstrap` when it runs on this machine: the jar version
    on the classpath of the `kafka.Kafka` JVM whose properties list that listener."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [part.decode(errors="replace") for part in argv if part]
        if "kafka.Kafka" not in args:
            continue
        version = _version_of(args, bootstrap)
        if version is not None:
            return version
    return "unknown (no kafka.Kafka process on this machine listens there)"


def _version_of(args: list[str], bootstrap: str) -> str | None:
    properties = Path(args[-1])
    try:
        text = properties.read_text()
    except OSError:
        return None
    if not any(address in text for address in bootstrap.split(",")):
        return None
    classpath = args[args.index("-cp") + 1] if "-cp" in args else ""
    for entry in classpath.split(":"):
        directory = Path(entry.rstrip("*"))
        jars = directory.glob("kafka_2.*-*.jar") if directory.is_dir() else iter(())
        for jar in jars:
            match = re.match(r"kafka_2\.\d+-(\d[\w.]*?)(?:-\w+)?\.jar$", jar.name)
            if match:
                return match.group(1)
    return None


def machine_facts(bootstrap: str) -> dict[str, Any]:
    """Everything the results say about where and when they were measured."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "kafka_broker": broker_version(bootstrap),
        "bootstrap": bootstrap,
        "versions": versions(),
    }
