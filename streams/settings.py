"""Settings of the stream processor, on top of the pipeline's `mic_pipeline.config.Settings`.

| variable | default | meaning |
|---|---|---|
| `MIC_STREAMS_APP_ID` | `<topic prefix>mic-streams` | faust app id = consumer group; internal topic prefix |
| `MIC_STREAMS_WEB_PORT` | `6066` | port of the faust web server (`/aggregates`, `/health`) |
| `MIC_STREAMS_MEMBER_WAIT_S` | `300` | how long (processing time) an event waits for its member |
| `MIC_STREAMS_RECHECK_S` | `1.0` | how often a waiting event re-checks the member directory |
| `MIC_STREAMS_DEDUPE_DAYS` | `7` | event-time retention of the de-duplication index |
| `MIC_STREAMS_SNAPSHOT_S` | `1.0` | interval of aggregate snapshots (replicas and `mic.aggregates`) |
| `MIC_STREAMS_COMMIT_S` | `1.0` | checkpoint interval: outputs, state, offsets made durable |
| `MIC_STREAMS_GUARANTEE` | `at_least_once` | the only guarantee (replay-safe; `streams/README.md`) |

The CLI flags of `mic-pipeline streams` override the variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mic_pipeline.config import Settings

GUARANTEES = ("at_least_once",)
"""faust's `exactly_once` (transactions) is not used: it failed both kill -9 runs it was tried in
(duplicates, a crash in table recovery), and the outputs are idempotent by `event_id` anyway."""


@dataclass(frozen=True)
class StreamSettings:
    """Resolved settings of one stream worker."""

    pipeline: Settings
    app_id: str
    web_port: int = 6066
    member_wait_s: float = 300.0
    recheck_s: float = 1.0
    dedupe_days: int = 7
    snapshot_s: float = 1.0
    commit_s: float = 1.0
    guarantee: str = "at_least_once"

    def __post_init__(self) -> None:
        if self.guarantee not in GUARANTEES:
            raise ValueError(f"guarantee must be one of {GUARANTEES}, got {self.guarantee!r}")
        if self.member_wait_s < 0 or self.recheck_s <= 0 or self.snapshot_s <= 0 or self.commit_s <= 0:
            raise ValueError("member wait must be >= 0, recheck, snapshot and commit intervals > 0")
        if self.dedupe_days < 1:
            raise ValueError(f"dedupe retention must be >= 1 day, got {self.dedupe_days}")

    @classmethod
    def from_env(cls, pipeline: Settings, environ: dict[str, str] | None = None) -> StreamSettings:
        """Read the `MIC_STREAMS_*` variables (default: the process environment)."""
        env = dict(os.environ) if environ is None else environ
        return cls(
            pipeline=pipeline,
            app_id=env.get("MIC_STREAMS_APP_ID") or pipeline.topic("mic-streams"),
            web_port=int(env.get("MIC_STREAMS_WEB_PORT", "6066")),
            member_wait_s=float(env.get("MIC_STREAMS_MEMBER_WAIT_S", "300")),
            recheck_s=float(env.get("MIC_STREAMS_RECHECK_S", "1.0")),
            dedupe_days=int(env.get("MIC_STREAMS_DEDUPE_DAYS", "7")),
            snapshot_s=float(env.get("MIC_STREAMS_SNAPSHOT_S", "1.0")),
            commit_s=float(env.get("MIC_STREAMS_COMMIT_S", "1.0")),
            guarantee=env.get("MIC_STREAMS_GUARANTEE", "at_least_once"),
        )

    @property
    def changelog_topic(self) -> str:
        """The compacted changelog of the partitions' state (`streams.store`), one partition per
        input partition; created before the worker starts (`streams.cli.ensure_internal_topics`)."""
        return f"{self.app_id}-state-changelog"

    @property
    def members_topic(self) -> str:
        """Internal compacted topic replicating member profiles to every worker."""
        return f"{self.app_id}-members"

    @property
    def partials_topic(self) -> str:
        """Internal compacted topic replicating each partition's aggregates to every worker."""
        return f"{self.app_id}-partials"
