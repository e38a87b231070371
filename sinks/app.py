"""Assembly of a running sink: which topics, which group, which destination, which gate.

| sink | group id (default) | topics |
|---|---|---|
| `sql` | `mic-sink-sql` | the four `mic.<family>.enriched` topics and `mic.deadletter` |
| `parquet` | `mic-sink-parquet` | the four `mic.<family>.enriched` topics |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from mic_pipeline.config import Settings
from mic_pipeline.health import Health
from schemas.topics import DEADLETTER_TOPIC, Family
from sinks.batch import Sink
from sinks.quality.verdict import QualityGate
from sinks.runner import RunnerConfig, SinkRunner

SinkKind = Literal["sql", "parquet"]
SINK_KINDS: tuple[SinkKind, ...] = ("sql", "parquet")
DEFAULT_GROUP_IDS: dict[SinkKind, str] = {"sql": "mic-sink-sql", "parquet": "mic-sink-parquet"}


def sink_topics(settings: Settings, kind: SinkKind) -> list[str]:
    """The physical topics the sink of `kind` consumes."""
    topics = [settings.topic(family.enriched_topic) for family in Family]
    if kind == "sql":
        topics.append(settings.topic(DEADLETTER_TOPIC))
    return topics


def build_sink(settings: Settings, kind: SinkKind, gate: QualityGate | None) -> Sink:
    """The destination of `kind` for `settings` (no I/O yet: see `Sink.prepare`)."""
    if kind == "sql":
        from sinks.sql.sink import SqlSink

        return SqlSink.for_pipeline(settings.database_url, settings.topic, gate)
    from sinks.parquet.sink import ParquetSink

    return ParquetSink.for_pipeline(settings.warehouse_dir, settings.topic, gate)


def build_gate() -> QualityGate:
    """The Great Expectations gate (imports GX: takes seconds, do it once per process)."""
    from sinks.quality.gate import GxGate

    return GxGate()


def run_sink(
    settings: Settings,
    kind: SinkKind,
    config: RunnerConfig,
    should_stop: Callable[[], bool],
    *,
    gate: QualityGate | None = None,
    health: Health | None = None,
) -> SinkRunner:
    """Run one sink until `should_stop()`; returns the closed runner (for its counters)."""
    sink = build_sink(settings, kind, gate)
    runner = SinkRunner(settings, sink, sink_topics(settings, kind), config, health)
    try:
        runner.run(should_stop)
    finally:
        runner.close()
    return runner
