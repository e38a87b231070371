"""The pipeline's Kafka topics: what they are and how they are created.

`pipeline_topic_specs` says which topics the pipeline needs (a pure function of the settings);
`ensure_topics` creates the missing ones on a broker and checks the existing ones;
`create_topics` is the one-call entry point used by `mic-pipeline topics create` and the tests.

Creation is idempotent: a topic that already exists with the wanted partition count and the
wanted explicit configuration is left alone. One that exists with a different partition count or
a different value of a configuration key we set is reported as a mismatch and never silently
accepted: partitions cannot be reduced and adding them moves keys between partitions, so fixing
that is an operator's decision. Configuration values (retention, ...) are changed only when asked
(`update_config`, `mic-pipeline topics create --update-config`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mic_pipeline.config import Settings
from schemas.topics import AGGREGATES_TOPIC, DEADLETTER_TOPIC, Family

DAY_MS = 24 * 60 * 60 * 1000
DEFAULT_RETENTION_MS = 7 * DAY_MS
DEFAULT_REPLICATION_FACTOR: int | None = None
"""None: the cluster's `default.replication.factor` (1 on the single broker, 3 on the local cluster)."""
DEFAULT_TIMEOUT_S = 30.0
# Records up to this size are accepted on the input and dead-letter topics, so that oversized
# poison pills (e.g. a 10 MB value) reach the stream and their dead letters (which carry the
# original bytes, base64 when not UTF-8) can be written. The contract's own limit is 256 KiB.
MAX_RECORD_BYTES = 16 * 1024 * 1024

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the pipeline wants it: physical name, partition count and explicit config."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


class TopicState(StrEnum):
    """What `ensure_topics` found or did for one topic."""

    CREATED = "created"
    EXISTS = "exists"
    UPDATED = "config updated"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class TopicOutcome:
    """The result for one topic; `problems` explains a mismatch (empty otherwise)."""

    spec: TopicSpec
    state: TopicState
    problems: tuple[str, ...] = ()


class TopicUpdateError(RuntimeError):
    """The broker refused, or did not apply in time, a configuration change of existing topics."""


class TopicMismatchError(RuntimeError):
    """Some topics exist with a partition count or configuration other than the wanted one."""

    def __init__(self, outcomes: Sequence[TopicOutcome]) -> None:
        self.outcomes = tuple(outcomes)
        lines = [f"{o.spec.name}: {'; '.join(o.problems)}" for o in self.outcomes]
        super().__init__("existing topics do not match the wanted layout:\n  " + "\n  ".join(lines))


def pipeline_topic_specs(settings: Settings, *, retention_ms: int = DEFAULT_RETENTION_MS) -> list[TopicSpec]:
    """Every topic the pipeline uses, with physical (prefixed) names.

    The four family input topics, the dead-letter topic and the four enriched topics keep records
    for `retention_ms` (time-based deletion); `mic.aggregates` is compacted (latest snapshot per
    key), so it has no time retention. All get `settings.partitions` partitions. The input and
    dead-letter topics accept records up to `MAX_RECORD_BYTES`.
    """
    if retention_ms < 1:
        raise ValueError(f"retention_ms must be >= 1, got {retention_ms}")
    timed = {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}
    large = {**timed, "max.message.bytes": str(MAX_RECORD_BYTES)}
    wanted: list[tuple[str, dict[str, str]]] = [(family.topic, large) for family in Family]
    wanted.append((DEADLETTER_TOPIC, large))
    wanted.extend((family.enriched_topic, timed) for family in Family)
    wanted.append((AGGREGATES_TOPIC, {"cleanup.policy": "compact"}))
    return [TopicSpec(settings.topic(name), settings.partitions, dict(config)) for name, config in wanted]


@contextlib.contextmanager
def admin_client(target: Settings | str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Any]:
    """A kafka-python `KafkaAdminClient` for the broker of `target` (its settings, security
    included; or the bootstrap of a plain broker), closed on exit."""
    from kafka.admin import KafkaAdminClient

    from mic_pipeline.kafka_clients import kafka_python_options

    settings = target if isinstance(target, Settings) else Settings(kafka_bootstrap=target)
    timeout_ms = int(timeout_s * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        **kafka_python_options(
            settings,
            client_id="mic-pipeline-admin",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        ),
    )
    try:
        yield admin
    finally:
        admin.close()


def compare_topic(spec: TopicSpec, partitions: int, config: Mapping[str, str]) -> tuple[str, ...]:
    """The differences between `spec` and an existing topic's partition count and config values."""
    problems: list[str] = []
    if partitions != spec.partitions:
        problems.append(f"has {partitions} partitions, wanted {spec.partitions}")
    for key, wanted in sorted(config_drift(spec, config).items()):
        problems.append(f"{key}={config.get(key)}, wanted {wanted}")
    return tuple(problems)


def config_drift(spec: TopicSpec, config: Mapping[str, str]) -> dict[str, str]:
    """The keys of `spec.config` whose value in `config` differs, with the wanted values."""
    return {key: wanted for key, wanted in spec.config.items() if config.get(key) != wanted}


def ensure_topics(
    admin: Any,
    specs: Sequence[TopicSpec],
    *,
    replication_factor: int | None = DEFAULT_REPLICATION_FACTOR,
    update_config: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[TopicOutcome]:
    """Create the topics of `specs` that are missing and check the others, through `admin`.

    Returns one outcome per spec, in order. New topics get `replication_factor` replicas (None: the
    cluster's `default.replication.factor`) and are usable (every partition has a leader) when
    this returns. With `update_config`, existing topics whose explicit configuration differs
    get the wanted values (an incremental change of those keys only); a different partition
    count is always reported as a mismatch. Raises kafka-python's errors for anything but
    "topic already exists".
    """
    from kafka.admin._configs import ConfigResource, ConfigResourceType

    created, existing = _create_missing(admin, specs, replication_factor, int(timeout_s * 1000))
    partition_counts, configs = _describe(admin, existing)
    outcomes: list[TopicOutcome] = []
    updates: dict[str, dict[str, str]] = {}
    for spec in specs:
        if spec.name in created:
            outcomes.append(TopicOutcome(spec, TopicState.CREATED))
            continue
        partitions, config = partition_counts.get(spec.name, 0), configs.get(spec.name, {})
        drift = config_drift(spec, config)
        if update_config and drift:
            updates[spec.name] = drift
            config = {**config, **drift}
        problems = compare_topic(spec, partitions, config)
        if problems:
            outcomes.append(TopicOutcome(spec, TopicState.MISMATCH, problems))
        else:
            outcomes.append(TopicOutcome(spec, TopicState.UPDATED if drift else TopicState.EXISTS))
    if updates:
        topic = ConfigResourceType.TOPIC
        resources = [ConfigResource(topic, name, configs=keys) for name, keys in updates.items()]
        results = admin.alter_configs(resources, incremental=True).get("topic", {})
        failed = {name: result for name, result in results.items() if result != "OK"}
        if failed:
            raise TopicUpdateError(f"updating topic configuration failed: {failed}")
        _wait_for_config(admin, updates, timeout_s)
    return outcomes


def _describe(admin: Any, names: set[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """Partition counts and configuration values (all keys) of the existing topics `names`."""
    from kafka.admin._configs import ConfigResource, ConfigResourceType

    partition_counts: dict[str, int] = {}
    configs: dict[str, dict[str, str]] = {}
    if names:
        for topic in admin.describe_topics(sorted(names)):
            partition_counts[topic["name"]] = len(topic["partitions"])
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in sorted(names)]
        described = admin.describe_configs(resources, config_filter="all")
        for name, entries in described.get("topic", {}).items():
            configs[name] = {key: str(entry["value"]) for key, entry in entries.items()}
    return partition_counts, configs


def _wait_for_config(admin: Any, wanted: Mapping[str, Mapping[str, str]], timeout_s: float) -> None:
    """Wait until the broker describes the changed configuration (it applies changes shortly after
    accepting them), so that a following check sees them."""
    deadline = time.monotonic() + timeout_s
    while True:
        _, configs = _describe(admin, set(wanted))
        pending = {
            name: keys
            for name, keys in wanted.items()
            if any(configs.get(name, {}).get(key) != value for key, value in keys.items())
        }
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TopicUpdateError(f"configuration changes not visible after {timeout_s:.0f} s: {pending}")
        time.sleep(0.1)


def _create_missing(
    admin: Any, specs: Sequence[TopicSpec], replication_factor: int | None, timeout_ms: int
) -> tuple[set[str], set[str]]:
    """Ask for every topic of `specs`; the names created now and the names that already existed."""
    from kafka.errors import for_code

    request = {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": -1 if replication_factor is None else replication_factor,
            "configs": dict(spec.config),
        }
        for spec in specs
    }
    response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
    created: set[str] = set()
    existing: set[str] = set()
    for result in response["topics"]:
        code = result["error_code"]
        if code == 0:
            created.add(result["name"])
        elif code == _TOPIC_ALREADY_EXISTS:
            existing.add(result["name"])
        else:
            error = for_code(code)
            raise error(f"creating topic {result['name']}: {result.get('error_message') or error.__name__}")
    if created:
        admin.wait_for_topics(sorted(created), timeout_ms=timeout_ms)
    return created, existing


def create_topics(
    settings: Settings,
    *,
    retention_ms: int = DEFAULT_RETENTION_MS,
    replication_factor: int | None = DEFAULT_REPLICATION_FACTOR,
    update_config: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[str]:
    """Make sure every pipeline topic exists on `settings.kafka_bootstrap`; idempotent.

    Returns the physical names of all pipeline topics (created now or before), in the order of
    `pipeline_topic_specs`. Raises `TopicMismatchError` (after creating whatever was missing) when
    an existing topic has another partition count or, unless `update_config`, another value of a
    configuration key we set.
    """
    specs = pipeline_topic_specs(settings, retention_ms=retention_ms)
    with admin_client(settings, timeout_s=timeout_s) as admin:
        outcomes = ensure_topics(
            admin,
            specs,
            replication_factor=replication_factor,
            update_config=update_config,
            timeout_s=timeout_s,
        )
    mismatches = [outcome for outcome in outcomes if outcome.state is TopicState.MISMATCH]
    if mismatches:
        raise TopicMismatchError(mismatches)
    return [spec.name for spec in specs]
