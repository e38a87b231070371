"""The sink's dead letters (records it can never write) produced and acknowledged before its offsets
are committed (`sinks.runner`, step 2 of a checkpoint)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kafka.errors import KafkaError

from mic_pipeline import metrics
from schemas.deadletter import build_dead_letter
from sinks.batch import Rejected
from sinks.errors import REFUSED, TransientSinkError


def produce_dead_letters(producer: Any, topic: str, rejected: list[Rejected], ack_timeout_s: float) -> None:
    """Send one dead letter per rejected record to `topic` and wait for every acknowledgement.

    A refusal of this client's rights (`REFUSED`) is raised as it is; any other broker error, or an
    acknowledgement missing after `ack_timeout_s`, is a `TransientSinkError` (the step is retried;
    dead letters are keyed by their original coordinates, so a repeat is absorbed).
    """
    failed_at = datetime.now(UTC)
    futures = []
    for item in rejected:
        record = item.record
        value = build_dead_letter(
            reason=item.reason,
            detail=item.detail,
            original_topic=record.topic,
            original_partition=record.partition,
            original_offset=record.offset,
            original_key=record.key,
            original_value=record.value,
            event_id=item.event_id,
            event_type=item.event_type,
            failed_at=failed_at,
        )
        try:
            futures.append(producer.send(topic, key=record.key, value=value))
        except REFUSED:
            raise
        except KafkaError as exc:
            raise TransientSinkError(f"dead letter not produced: {exc}", kind="deadletter") from exc
    try:
        producer.flush(timeout=ack_timeout_s)
    except REFUSED:
        raise
    except KafkaError as exc:
        raise TransientSinkError(f"dead letters not flushed: {exc}", kind="deadletter") from exc
    for future in futures:
        if not future.is_done:
            raise TransientSinkError("dead letter not acknowledged in time", kind="deadletter")
        if future.failed():
            if isinstance(future.exception, REFUSED):
                raise future.exception
            raise TransientSinkError(f"dead letter not acknowledged: {future.exception}", kind="deadletter")
    for item in rejected:
        metrics.DEAD_LETTERS.labels(reason=item.reason.value).inc()
        metrics.EVENTS_OUT.labels(topic=topic).inc()
