"""Configuration from environment variables, with defaults for local use.

Every process of the pipeline reads its settings here and nowhere else:

| variable | default | meaning |
|---|---|---|
| `MIC_KAFKA_BOOTSTRAP` | `127.0.0.1:9092` | Kafka bootstrap servers |
| `MIC_DATABASE_URL` | `sqlite:///<warehouse>/warehouse.db` | SQLAlchemy URL of the SQL warehouse |
| `MIC_WAREHOUSE_DIR` | `./warehouse` | Parquet dataset root and default SQLite file |
| `MIC_TOPIC_PREFIX` | empty | prefix of every topic name (isolates test runs) |
| `MIC_PARTITIONS` | `6` | partitions per topic created by `mic-pipeline topics create` |
| `MIC_STATE_DIR` | `./.mic` | local state: broker data and logs, pid files, stream tables |
| `MIC_CACHE_DIR` | `~/.cache/mic-pipeline` | downloaded artifacts (the Kafka broker's jars) |
| `MIC_BIND_HOST` | `127.0.0.1` | address the HTTP endpoints (metrics, health, aggregates) listen on |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one pipeline process."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    warehouse_dir: Path = Path("warehouse")
    database_url: str = ""
    topic_prefix: str = ""
    partitions: int = 6
    state_dir: Path = Path(".mic")
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "mic-pipeline")
    bind_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not self.database_url:
            url = f"sqlite:///{(self.warehouse_dir / 'warehouse.db').resolve()}"
            object.__setattr__(self, "database_url", url)
        if self.partitions < 1:
            raise ValueError(f"MIC_PARTITIONS must be >= 1, got {self.partitions}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read settings from `environ` (default: the process environment)."""
        env = dict(os.environ) if environ is None else environ
        defaults = cls()
        partitions_text = env.get("MIC_PARTITIONS", str(defaults.partitions))
        try:
            partitions = int(partitions_text)
        except ValueError as exc:
            raise ValueError(f"MIC_PARTITIONS must be an integer, got {partitions_text!r}") from exc
        return cls(
            kafka_bootstrap=env.get("MIC_KAFKA_BOOTSTRAP", defaults.kafka_bootstrap),
            warehouse_dir=Path(env.get("MIC_WAREHOUSE_DIR", str(defaults.warehouse_dir))),
            database_url=env.get("MIC_DATABASE_URL", ""),
            topic_prefix=env.get("MIC_TOPIC_PREFIX", ""),
            partitions=partitions,
            state_dir=Path(env.get("MIC_STATE_DIR", str(defaults.state_dir))),
            cache_dir=Path(env.get("MIC_CACHE_DIR", str(defaults.cache_dir))),
            bind_host=env.get("MIC_BIND_HOST", defaults.bind_host),
        )

    def topic(self, name: str) -> str:
        """The physical topic name for a contract topic name (see `schemas.topics`)."""
        return f"{self.topic_prefix}{name}"
