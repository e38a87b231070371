"""The bench's stage names, in the order they run (light: imported when the CLI is built)."""

from __future__ import annotations

END_TO_END = "end_to_end"
ALL_STAGES: tuple[str, ...] = (
    "aiokafka", "faust", "quix", "worker_1", "worker_2",
    "sink_sqlite", "sink_postgres", "sink_parquet", END_TO_END,
)  # fmt: skip
