"""Peer 3, Quix Streams doing the stream worker's job in one process, with its RocksDB state.

The four input topics are concatenated into one `StreamingDataFrame` (Quix aligns them by record
timestamp); a stateful step, whose state Quix keeps in RocksDB per message key (= company_id) and
writes to its changelog topics, decides each record:

- decode and validate with the project's `schemas.decode.decode_event` (a failure becomes the
  project's dead letter, produced to the output topic);
- de-duplicate by `event_id` (a marker per event in the company's state);
- member events: the membership lifecycle with the project's `streams.rules.apply_event`, the
  member state kept in the company's state;
- other events: enriched with the company's own member profile from that state
  (`streams.enrich.enriched_record`); no active member -> dead letter `unknown_company` at once;
- the enriched row is produced to `<prefix>bench.quix.out`;
- count per industry (orders) or region (everything else): re-keyed with `group_by` (Quix's
  repartition topic) and counted in the state of the new key.

What it does not do that the stream worker does: enrichment with a counterparty's profile
(manufacturer, buyer, debtor: state is per key, a lookup across keys needs a global table), rule 2
lifecycles of orders, patents and factoring, waiting for a member that has not joined yet (rule 1
parking), recognising replays after a crash by origin, dead-letter and duplicate tallies, merged
aggregates served over HTTP.

The clock runs from the first record decided to the moment every record is decided and every
count update done; then the app stops (committing its last checkpoint) and the result is written.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from mic_pipeline.bench.peer import PeerArgs, write_result
from schemas.deadletter import build_dead_letter
from schemas.decode import DecodeFailure, decode_event
from schemas.events import Event
from schemas.reasons import DeadLetterReason
from schemas.topics import Family
from streams.enrich import enriched_record
from streams.rules import Violation, apply_event, is_active_member

Decision = tuple[bytes, str | None] | None
"""(output value, aggregate key or None); None for a duplicate (nothing to send)."""


class QuixJob:
    """The per-record decision and the counting step, with the progress the clock needs."""

    def __init__(self, args: PeerArgs) -> None:
        self.args = args
        self.app: Any = None
        self.decided = self.to_count = self.counted = 0
        self.duplicates = self.dead_letters = 0
        self.first: float | None = None
        self.decided_at: float | None = None
        self.done_at: float | None = None

    def decide(self, value: bytes, key: bytes | None, timestamp: int, headers: Any, state: Any) -> Decision:
        from quixstreams import message_context

        if self.first is None:
            self.first = time.perf_counter()
        self.decided += 1
        context = message_context()
        decision = self._decide(value, key, state, context.topic, context.partition, context.offset)
        if decision is not None and decision[1] is not None:
            self.to_count += 1
        if self.decided == self.args.expect:
            self.decided_at = time.perf_counter()
        self._check_done()
        return decision

    def _decide(
        self, value: bytes, key: bytes | None, state: Any, topic: str, partition: int, offset: int
    ) -> Decision:
        logical = self.args.logical(topic)
        decoded = decode_event(value, topic=logical)
        where = (logical, partition, offset, key, value)
        if isinstance(decoded, DecodeFailure):
            return self._letter(where, decoded.reason, decoded.detail, decoded.event_id, decoded.event_type)
        event = decoded
        marker = f"e:{event.event_id}"
        if state.exists(marker):
            self.duplicates += 1
            return None
        state.set(marker, 1)
        if event.family is Family.MEMBER:
            member = apply_event(state.get("m"), event)
            if isinstance(member, Violation):
                return self._letter(where, member.reason, member.detail, event.event_id, event.event_type)
            state.set("m", member)
        else:
            member = state.get("m")
            if not is_active_member(member):
                detail = f"not an active member: {event.company_id}"
                reason = DeadLetterReason.UNKNOWN_COMPANY
                return self._letter(where, reason, detail, event.event_id, event.event_type)
        profile = member["profile"]
        row = enriched_record(event, profile, None)
        return row, _aggregate_key(event, profile)

    def _letter(
        self,
        where: tuple[str, int, int, bytes | None, bytes],
        reason: DeadLetterReason,
        detail: str,
        event_id: str | None,
        event_type: str | None,
    ) -> Decision:
        topic, partition, offset, key, value = where
        self.dead_letters += 1
        letter = build_dead_letter(
            reason=reason, detail=detail, original_topic=topic, original_partition=partition,
            original_offset=offset, original_key=key, original_value=value, event_id=event_id,
            event_type=event_type, failed_at=datetime.now(UTC), max_value_bytes=512 * 1024,
        )  # fmt: skip
        return letter, None

    def count(self, value: dict[str, Any], state: Any) -> None:
        state.set("n", state.get("n", 0) + 1)
        self.counted += 1
        self._check_done()

    def _check_done(self) -> None:
        if self.done_at is None and self.decided >= self.args.expect and self.counted >= self.to_count:
            self.done_at = time.perf_counter()
            self.app.stop()


def _aggregate_key(event: Event, profile: dict[str, Any]) -> str:
    industry = getattr(event.payload, "industry", None)
    if isinstance(industry, str):
        return f"industry:{industry}"
    return f"region:{profile.get('region_code')}"


SETUP_ATTEMPTS = 3


def _build(args: PeerArgs, job: QuixJob) -> tuple[Any, str]:
    """The Quix application with its dataframe; (app, output topic name)."""
    from quixstreams import Application
    from quixstreams.models.topics import TopicConfig

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(args.work / "quix-state"),
        loglevel="WARNING",
    )
    config = TopicConfig(num_partitions=args.partitions, replication_factor=1)
    inputs = [app.topic(name, value_deserializer="bytes", key_deserializer="bytes") for name in args.inputs]
    output = app.topic(
        f"{args.prefix}bench.quix.out", value_serializer="bytes", key_serializer="bytes", config=config
    )
    job.app = app
    sdf = app.dataframe(inputs[0])
    for topic in inputs[1:]:
        sdf = sdf.concat(app.dataframe(topic))
    sdf = sdf.apply(job.decide, stateful=True, metadata=True).filter(lambda decision: decision is not None)
    sdf.apply(lambda decision: decision[0]).to_topic(output)
    counts = sdf.filter(lambda decision: decision[1] is not None).apply(lambda decision: {"k": decision[1]})
    counts.group_by("k", name="aggregate").update(job.count, stateful=True)
    return app, output.name


def run(args: PeerArgs) -> None:
    from quixstreams.models.topics.exceptions import TopicNotFoundError

    job = QuixJob(args)
    for attempt in range(1, SETUP_ATTEMPTS + 1):
        try:
            app, output = _build(args, job)
            break
        except TopicNotFoundError:
            # Quix creates its changelog and repartition topics and reads them back at once; on a busy
            # broker the read can precede the metadata update. The topics exist on the next attempt.
            if attempt == SETUP_ATTEMPTS:
                raise
            time.sleep(1.0)
    app.run()
    if job.first is None or job.done_at is None:
        raise RuntimeError(f"Quix stopped after {job.decided} of {args.expect} records")
    write_result(
        args, job.decided, job.done_at - job.first, duplicates=job.duplicates,
        dead_letters=job.dead_letters, counted=job.counted, output_topic=output,
        seconds_to_decide_all=round((job.decided_at or job.done_at) - job.first, 3),
    )  # fmt: skip
