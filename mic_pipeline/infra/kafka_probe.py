"""Is a broker (or a cluster) able to serve the pipeline: metadata, unfenced brokers, a group
coordinator. Used while starting brokers (`kafka_broker`, `kafka_cluster`) and by `kafka status`."""

from __future__ import annotations

from collections.abc import Collection

from mic_pipeline.config import Settings

READINESS_GROUP = "mic-pipeline-readiness-probe"


def answers_metadata(target: Settings | str, *, timeout_s: float = 2.0) -> bool:
    """True when the broker of `target` (settings, or the bootstrap of a plain broker) answers a
    metadata request and lists an unfenced broker."""
    settings = target if isinstance(target, Settings) else Settings(kafka_bootstrap=target)
    return not_ready_reason(settings, timeout_s=timeout_s, need_group_coordinator=False) is None


def not_ready_reason(
    settings: Settings, *, timeout_s: float, need_group_coordinator: bool, brokers: Collection[int] = ()
) -> str | None:
    """Why the broker of `settings` cannot serve the pipeline yet, or None when it can.

    Ready means: it answers metadata requests, lists an unfenced broker -- every one of `brokers`
    (node ids) when given -- and (if asked) finds a group coordinator, which on a new broker first
    needs `__consumer_offsets` to be created.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    from mic_pipeline.kafka_clients import kafka_python_options

    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            **kafka_python_options(
                settings,
                client_id="mic-pipeline-probe",
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            ),
        )
    except (KafkaError, OSError) as exc:
        return f"no answer to metadata requests ({exc.__class__.__name__})"
    try:
        listed = admin.describe_cluster()["brokers"]
        unfenced = {broker["broker_id"] for broker in listed if not broker.get("is_fenced", False)}
        if not unfenced:
            return "no unfenced broker registered yet"
        missing = sorted(set(brokers) - unfenced)
        if missing:
            return f"broker(s) {', '.join(map(str, missing))} not registered unfenced yet"
        if need_group_coordinator:
            admin.describe_groups([READINESS_GROUP])
    except (KafkaError, OSError) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    finally:
        admin.close()
    return None
