"""What every stage of one bench run shares: options, the broker, the backlogs, the work directory."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mic_pipeline.bench.backlog import Backlog, Enriched
from mic_pipeline.bench.kafka import Offsets, stage_settings
from mic_pipeline.bench.procs import BenchError, Children
from mic_pipeline.config import Settings


@dataclass(frozen=True)
class Options:
    """The command's options (see `mic_pipeline.bench.cli`)."""

    records: int
    quick: bool
    out: Path
    bootstrap: str
    partitions: int = 6
    seed: int = 11
    scale: float = 1.0
    invalid_fraction: float = 0.02
    clock_step_s: int = 2
    postgres_url: str = ""
    stages: tuple[str, ...] = ()
    rates: tuple[float, ...] = (500.0, 2000.0)
    ramp: bool = True
    rate_seconds: float = 20.0
    ramp_seconds: float = 15.0
    hold_p99_s: float = 3.0
    poll_interval_s: float = 0.1
    member_wait_s: float = 300.0
    stage_timeout_s: float = 900.0
    keep_work: bool = False
    sink_args: tuple[str, ...] = ()
    """Extra options of every `mic-pipeline sink` child (--quick: a shorter batch wait)."""
    start_broker: bool = True


@dataclass
class Context:
    """One run's shared state; `log` prints a progress line."""

    options: Options
    base: Settings
    run_id: str
    work: Path
    backlog: Backlog
    enriched: Enriched
    log: Callable[[str], None]
    skipped: dict[str, str] = field(default_factory=dict)

    def settings(self, stage: str) -> Settings:
        """Fresh topic prefix, state and warehouse directories for `stage`."""
        return stage_settings(self.base, self.run_id, stage, self.work)

    def children(self, stage: str) -> Children:
        return Children(self.work / stage / "logs")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_json(url: str) -> dict[str, Any] | None:
    """The JSON document at `url` (also from a 503 answer); None while nothing listens there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document
    except urllib.error.HTTPError as error:
        answered: dict[str, Any] = json.loads(error.read())
        return answered
    except (urllib.error.URLError, ConnectionError):
        return None


@dataclass
class Window:
    """When a consumer group's commits covered the records: the basis of an events/s figure.

    `first_at`/`first_committed`: the first poll that saw a commit (and, if asked, every process
    ready); `done_at`: the first poll that saw `total` committed; `started_at`: the processes' start;
    `reading_at` (when watched): the first poll that saw the consumer ready to read, with nothing
    committed yet -- then the figure is all records over `reading_at -> done_at`, which does not
    depend on how the consumer cuts its batches (a first checkpoint of 60% of the backlog moves the
    first commit, not the work).
    """

    total: int
    started_at: float
    first_at: float | None = None
    first_committed: int = 0
    done_at: float | None = None
    reading_at: float | None = None

    def figures(self) -> dict[str, Any]:
        """events/s between the first commit and the last, and from the processes' start."""
        if self.done_at is None:
            raise BenchError(f"not all of {self.total} records were committed")
        from_start = self.total / (self.done_at - self.started_at)
        result: dict[str, Any] = {
            "records": self.total,
            "seconds_from_start": round(self.done_at - self.started_at, 2),
            "per_s_from_start": round(from_start, 1),
        }
        assert self.first_at is not None
        if self.first_committed < self.total and self.done_at > self.first_at:
            result["committed_at_first_commit"] = self.first_committed
            result["seconds_from_first_commit"] = round(self.done_at - self.first_at, 2)
        if self.reading_at is not None and self.done_at > self.reading_at:
            result["seconds"] = round(self.done_at - self.reading_at, 2)
            result["per_s"] = round(self.total / (self.done_at - self.reading_at), 1)
            result["window"] = "ready to read (nothing committed yet) -> all committed"
        elif self.first_committed < self.total and self.done_at > self.first_at:
            result["committed_at_first_commit"] = self.first_committed
            result["seconds"] = round(self.done_at - self.first_at, 2)
            result["per_s"] = round((self.total - self.first_committed) / (self.done_at - self.first_at), 1)
            result["window"] = "first commit -> all committed"
        else:  # everything was committed at the first commit seen: only the start-up-inclusive rate
            result["seconds"] = result["seconds_from_start"]
            result["per_s"] = round(from_start, 1)
            result["window"] = "process start -> all committed (all committed at the first commit seen)"
        return result


def watch_commits(
    offsets: Offsets,
    group: str,
    topics: list[str],
    total: int,
    children: Children,
    *,
    timeout_s: float,
    interval_s: float = 0.25,
    ready: Callable[[], bool] = lambda: True,
    reading: Callable[[], bool] | None = None,
) -> Window:
    """Poll `group`'s committed offsets on `topics` until `total` are committed (see `Window`);
    with `reading`, also when the consumer became ready to read (before its first commit)."""
    window = Window(total, time.monotonic())
    deadline = window.started_at + timeout_s
    while True:
        committed = offsets.committed(group, topics)
        now = time.monotonic()
        if reading is not None and window.reading_at is None and committed == 0 and reading():
            window.reading_at = now
        if window.first_at is None and committed > 0 and ready():
            window.first_at, window.first_committed = now, committed
        if committed >= total and window.first_at is not None:
            window.done_at = now
            return window
        children.sample()
        if now > deadline:
            raise BenchError(
                f"group {group}: {committed} of {total} records committed after {timeout_s:.0f} s"
            )
        time.sleep(interval_s)


def worker_env(settings: Settings, app_id: str, port: int, member_wait_s: float) -> dict[str, str]:
    """The environment of a `mic-pipeline streams` child of a stage."""
    return {
        **os.environ,
        "MIC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "MIC_TOPIC_PREFIX": settings.topic_prefix,
        "MIC_STATE_DIR": str(settings.state_dir),
        "MIC_PARTITIONS": str(settings.partitions),
        "MIC_STREAMS_WEB_PORT": str(port),
        "MIC_STREAMS_APP_ID": app_id,
        "MIC_STREAMS_MEMBER_WAIT_S": f"{member_wait_s:g}",
    }


def sink_env(settings: Settings) -> dict[str, str]:
    """The environment of a `mic-pipeline sink` child of a stage."""
    return {
        **os.environ,
        "MIC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "MIC_TOPIC_PREFIX": settings.topic_prefix,
        "MIC_STATE_DIR": str(settings.state_dir),
        "MIC_PARTITIONS": str(settings.partitions),
        "MIC_WAREHOUSE_DIR": str(settings.warehouse_dir),
        "MIC_DATABASE_URL": settings.database_url,
    }
