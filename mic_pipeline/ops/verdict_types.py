"""The operator's view of the pipeline as plain data (no I/O): what `status` measured.

`mic_pipeline.ops.verdict` judges a `StatusSnapshot`; `mic_pipeline.ops.lag_rules` judges each
group's lag over the snapshot's window of samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PartitionLag:
    """One partition of a topic as seen by one consumer group.

    `committed` is None when the group never committed this partition (its lag then counts from the
    partition's first retained record). `lag_seconds` is the age of the record at the committed
    offset (the oldest unprocessed one) by its Kafka timestamp, 0 when nothing is unprocessed.
    """

    topic: str
    partition: int
    committed: int | None
    end: int
    lag_records: int
    lag_seconds: float


@dataclass(frozen=True)
class GroupStatus:
    """A consumer group's position on the pipeline's topics."""

    group: str
    partitions: tuple[PartitionLag, ...]

    @property
    def lag_records(self) -> int:
        """Unprocessed records over all partitions."""
        return sum(p.lag_records for p in self.partitions)

    @property
    def lag_seconds(self) -> float:
        """Age of the oldest unprocessed record over all partitions (0 when caught up)."""
        return max((p.lag_seconds for p in self.partitions), default=0.0)


@dataclass(frozen=True)
class TopicThroughput:
    """Records appended to a topic during the last `window_seconds`."""

    topic: str
    records: int
    window_seconds: float

    @property
    def per_second(self) -> float:
        """Mean append rate over the window."""
        return self.records / self.window_seconds if self.window_seconds > 0 else 0.0


@dataclass(frozen=True)
class FamilyFreshness:
    """When a sink last landed a row of a family (`landed_at`), and what is on its way to it.

    `newest_landed_at` None: nothing landed (with a `landed_at`) yet. `inputs_since` counts the records
    on their way to the sink (input records the stream has not decided, enriched records the sink has
    not committed: `mic_pipeline.ops.status`) and `waiting_seconds` is the age of the oldest of them
    (None: none, or not measured: broker down)."""

    family: str
    table: str
    newest_landed_at: datetime | None
    age_seconds: float | None
    sink: str = "sql"
    inputs_since: int | None = None
    waiting_seconds: float | None = None


@dataclass(frozen=True)
class QualityGateStatus:
    """Quality-gate failures recorded by the sinks (`available` False: no such records exist yet)."""

    available: bool
    failures: int = 0
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComponentHealth:
    """What one component's readiness endpoint answered.

    `error` is set when the endpoint did not answer a readiness document (unreachable, another HTTP
    status than 200/503); else `ready` and, when not ready, its `reasons` and `since` (epoch
    seconds of the last change of readiness, the component's clock)."""

    name: str
    url: str
    ready: bool
    reasons: tuple[str, ...] = ()
    since: float | None = None
    last_progress: float | None = None
    error: str | None = None

    def not_ready_for(self, now: float) -> float | None:
        """Seconds the component has been not ready at `now` (None when ready or unknown)."""
        if self.ready or self.error is not None or self.since is None:
            return None
        return max(0.0, now - self.since)

    def describe(self, now: float, limit: float | None = None) -> str:
        """One line: `sink-parquet: not ready for 42 s: disk full: ...` (with `(> limit s)` after
        the duration when given)."""
        if self.error is not None:
            return f"{self.name}: {self.error}"
        if self.ready:
            return f"{self.name}: ready"
        duration = self.not_ready_for(now)
        for_how_long = "" if duration is None else f" for {duration:.0f} s"
        if limit is not None:
            for_how_long += f" (> {limit:g} s)"
        reasons = "; ".join(self.reasons) or "no reason given"
        return f"{self.name}: not ready{for_how_long}: {reasons}"


@dataclass(frozen=True)
class LagSample:
    """The groups' committed and end offsets at one moment (`lag_seconds` not measured: 0)."""

    at: datetime
    groups: tuple[GroupStatus, ...]


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything `status` measured at `taken_at`. Errors are strings, never exceptions."""

    taken_at: datetime
    broker_error: str | None = None
    broker_refused: bool = False
    """`broker_error` is the broker refusing these settings (login, TLS, ACL), not it being unreachable."""
    groups: tuple[GroupStatus, ...] = ()
    missing_groups: tuple[str, ...] = ()
    """Groups asked for (`--group`, or the pipeline's own under `run`/`demo`) with no committed offset."""
    missing_waiting_s: Mapping[str, float] = field(default_factory=dict)
    """Per missing group, the age of the oldest record on the topics it consumes (absent: none there)."""
    missing_topics: tuple[str, ...] = ()
    throughput: tuple[TopicThroughput, ...] = ()
    dead_letters_last_hour: Mapping[str, int] = field(default_factory=dict)
    warehouse_error: str | None = None
    freshness: tuple[FamilyFreshness, ...] = ()
    quality: QualityGateStatus = field(default_factory=lambda: QualityGateStatus(available=False))
    components: tuple[ComponentHealth, ...] = ()
    history: tuple[LagSample, ...] = ()
    """Earlier samples of the groups' offsets (oldest first; `groups` is the current one): the window
    the lag rules judge (`mic_pipeline.ops.lag_rules`)."""
