"""Reading `mic.deadletter` and re-publishing dead letters to their original topics (kafka-python).

Replay sends the original value bytes untouched, with the original key, so the event keeps its
`event_id`: the stream drops a repeat of an id it already accepted and the sinks upsert by it, so a
replayed event lands at most once. Each replayed record carries a `mic-replayed-from` header naming
the dead letter it came from (`<deadletter topic>:<partition>:<offset>`); headers are never required.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime

from kafka import KafkaProducer

from mic_pipeline.config import Settings
from mic_pipeline.kafka_clients import kafka_python_options
from mic_pipeline.ops.deadletters import (
    DeadLetterFilter,
    DeadLetterView,
    InvalidDeadLetter,
    ReplayDecision,
    decide_replays,
    parse_dead_letter,
)
from mic_pipeline.ops.kafka_probe import KafkaProbe
from schemas.topics import DEADLETTER_TOPIC

log = logging.getLogger(__name__)
REPLAY_HEADER = "mic-replayed-from"


def read_dead_letters(
    probe: KafkaProbe, topic: str, since: datetime | None = None
) -> Iterator[DeadLetterView]:
    """Every dead letter of `topic` whose record timestamp is at or after `since` (all when None), up
    to the end offsets at the time of the call, partition by partition. Records that are not
    contract dead letters are logged and skipped."""
    partitions = probe.partitions([topic])
    ends = probe.end_offsets(partitions)
    since_ms = None if since is None else int(since.timestamp() * 1000)
    starts = (
        probe.beginning_offsets(partitions) if since_ms is None else probe.offsets_at(partitions, since_ms)
    )
    for record in probe.read_ranges({tp: (starts[tp], ends[tp]) for tp in partitions}):
        if since_ms is not None and record.timestamp < since_ms:
            continue
        if record.value is None:
            log.warning("%s[%d]@%d has no value (tombstone)", topic, record.partition, record.offset)
            continue
        try:
            yield parse_dead_letter(record.value, (record.partition, record.offset))
        except InvalidDeadLetter as error:
            log.warning("%s[%d]@%d is not a dead letter: %s", topic, record.partition, record.offset, error)


def iter_dead_letters(
    settings: Settings, selection: DeadLetterFilter, timeout_ms: int = 5000
) -> Iterator[DeadLetterView]:
    """The dead letters of the pipeline's dead-letter topic that match `selection`, in offset order
    per partition (`since` also narrows the read by record timestamp). Streams: memory stays flat."""
    with KafkaProbe(settings, timeout_ms=timeout_ms) as probe:
        for letter in read_dead_letters(probe, settings.topic(DEADLETTER_TOPIC), since=selection.since):
            if selection.matches(letter):
                yield letter


def validate_against_contract(raw: bytes, logical_topic: str) -> str | None:
    """The schemas' decoder as a replay validator: None when valid, else the failure's reason."""
    from schemas.decode import DecodeFailure, decode_event

    result = decode_event(raw, topic=logical_topic)
    return str(result.reason) if isinstance(result, DecodeFailure) else None


def replay(
    settings: Settings,
    letters: Sequence[DeadLetterView],
    *,
    force: bool = False,
    dry_run: bool = False,
    timeout_ms: int = 10000,
) -> list[ReplayDecision]:
    """Decide each dead letter's replay and, unless `dry_run`, publish the chosen ones (acks=all,
    flushed before returning). Returns every decision."""
    decisions = decide_replays(letters, settings.topic_prefix, validate_against_contract, force)
    chosen = [d for d in decisions if d.skip_reason is None]
    if dry_run or not chosen:
        return decisions
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        **kafka_python_options(
            settings,
            acks="all",
            enable_idempotence=True,
            client_id="mic-ops-replay",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        ),
    )
    try:
        deadletter_topic = settings.topic(DEADLETTER_TOPIC)
        futures = [
            producer.send(
                d.target_topic,
                key=d.letter.original_key,
                value=d.letter.original_value,
                headers=[
                    (
                        REPLAY_HEADER,
                        f"{deadletter_topic}:{d.letter.position[0]}:{d.letter.position[1]}".encode(),
                    )
                ],
            )
            for d in chosen
        ]
        producer.flush(timeout=timeout_ms / 1000)
        for future in futures:
            future.get(timeout=timeout_ms / 1000)
    finally:
        producer.close(timeout=timeout_ms / 1000)
    return decisions
