"""Readiness of a long-running component, with the reason when it is not ready (ground floor).

Readiness means progress, not "the process runs": a sink that cannot write (database down, disk
full, a write error) or a stream worker whose partitions lag while its commits do not move is not
ready, and says why. Each process owns one `Health` per component (`sink-sql`, `sink-parquet`,
`streams`); the component reports problems as they happen and clears them when it makes progress
again. `mic_pipeline.metrics.serve` answers `/health/ready` from it (503 with the reasons when not
ready).

Thread-safe: the sinks report from their main loop while the metrics server reads from its own
thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class HealthState:
    """A snapshot of one component's health."""

    component: str
    ready: bool
    reasons: tuple[str, ...]
    """Why it is not ready (empty when ready), one human line per problem."""
    since: float
    """Wall-clock time (epoch seconds) of the last change of readiness."""
    last_progress: float | None
    """Wall-clock time of the last progress noted (a batch landed, an offset committed)."""

    def as_json(self) -> dict[str, object]:
        return {
            "component": self.component,
            "status": "ready" if self.ready else "not ready",
            "reasons": list(self.reasons),
            "since": self.since,
            "last_progress": self.last_progress,
        }


class Health:
    """The readiness of one component: problems by kind, each with a human reason.

    `problem(kind, reason)` marks the component not ready until `clear(kind)` (or `progress()`,
    which clears every problem that progress disproves: see `cleared_by_progress`).
    """

    def __init__(self, component: str, *, clock: Callable[[], float] = time.time) -> None:
        self.component = component
        self._clock = clock
        self._lock = threading.Lock()
        self._problems: dict[str, str] = {}
        self._sticky: set[str] = set()
        self._since = clock()
        self._last_progress: float | None = None

    def problem(self, kind: str, reason: str, *, sticky: bool = False) -> None:
        """Not ready because of `reason` (one line). `kind` groups problems (`database`, `disk`,
        `write`, `lag`...): a later problem of the same kind replaces the reason. A sticky problem is
        not cleared by `progress()`, only by `clear(kind)`."""
        with self._lock:
            was_ready = not self._problems
            self._problems[kind] = reason
            if sticky:
                self._sticky.add(kind)
            else:
                self._sticky.discard(kind)
            if was_ready:
                self._since = self._clock()

    def clear(self, kind: str) -> None:
        """The problem of `kind` is over."""
        with self._lock:
            self._clear_locked(kind)

    def progress(self) -> None:
        """The component made progress (landed a batch, committed offsets): clears every
        non-sticky problem."""
        with self._lock:
            self._last_progress = self._clock()
            for kind in [k for k in self._problems if k not in self._sticky]:
                self._clear_locked(kind)

    def _clear_locked(self, kind: str) -> None:
        if self._problems.pop(kind, None) is not None:
            self._sticky.discard(kind)
            if not self._problems:
                self._since = self._clock()

    def state(self) -> HealthState:
        with self._lock:
            return HealthState(
                component=self.component,
                ready=not self._problems,
                reasons=tuple(self._problems.values()),
                since=self._since,
                last_progress=self._last_progress,
            )

    @property
    def ready(self) -> bool:
        with self._lock:
            return not self._problems
