"""The faust application: thin agents around `streams.processor.EventProcessor`.

Topology (all topics have the same partition count, so faust assigns partition `p` of every input,
of the recheck topic and of both table changelogs to the same worker):

    mic.membership|orders|patents|factoring --(input agent)--> decide --> mic.<family>.enriched
                                                   |                   --> mic.deadletter
                                                   +--> parked in the state table (rule 1)
    timer --tick--> <app>-recheck (partition p) --(recheck agent)--> decide p's parked records
    state table   (changelog, partition p): de-duplication markers, entity lifecycles, member states,
                  parked records (`streams.parking`)
    aggregates    (changelog, partition p): once-only dead-letter and duplicate counts (`streams.tallies`)
    <app>-members  (compacted): member states, replicated to every worker (`streams.replica`)
    <app>-partials (compacted): each partition's aggregates, replicated to every worker
    mic.aggregates (compacted): the merged aggregates document, one record per section

Rule 1 waits without blocking: an event whose member is not active is parked in the state table
(same changelog partition) and its input record acknowledged. Every `recheck_s` the worker sends a
tick to each owned partition of the recheck topic that has parked records; the recheck agent
re-decides them, sends the outcomes, waits for their acknowledgement and only then un-parks them.
The topic is only a clock: the records are in the changelogged state, so a lost or replayed tick
loses or repeats nothing (`streams.parking`).

Agents receive raw bytes; any exception while deciding a record is caught, logged and turned into
a dead letter, so no record can stop a partition. Agents acknowledge an event explicitly, after its
outputs were handed to the producer (`streams.delivery.for_each_acked`). Processing guarantee:
see `streams/README.md`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from mic_pipeline import metrics
from schemas.deadletter import build_dead_letter
from schemas.reasons import DeadLetterReason
from schemas.topics import AGGREGATES_TOPIC, DEADLETTER_TOPIC, Family, family_of_topic
from streams import delivery, seeking
from streams.aggregates import render
from streams.metered import MeteredMapping
from streams.ordering import ORDER, Admission
from streams.processor import DEAD_LETTER_VALUE_BYTES, REPLAY_HEADER, EventProcessor, Outcome
from streams.records import RECHECK, Position, SourceRecord
from streams.replica import MemberReplica, PartialsReplica, follow_topics, member_handler, partials_handler
from streams.settings import AGGREGATES_TABLE, STATE_TABLE, StreamSettings

log = logging.getLogger(__name__)
SESSION_TIMEOUT_S = 10.0
"""Consumer-group session timeout: how long a killed worker's partitions stay unassigned."""
REPLICA_WAIT_S = 30.0
"""Longest time agents wait at start-up for the member replica to catch up."""
MAX_WAIT_STEP_S = 2.0
"""Most one re-check tick adds to the waiting time of parked records (or 2 x `recheck_s` if that is more)."""
_encode = msgspec.json.Encoder(decimal_format="string")


def is_replayed(headers: Any) -> bool:
    """Whether a record's headers (pairs or a mapping, as faust passes them) mark a dead-letter replay."""
    if not headers:
        return False
    names = headers.keys() if isinstance(headers, Mapping) else (name for name, _ in headers)
    return REPLAY_HEADER in names


def build_app(settings: StreamSettings) -> Any:
    """The configured faust app with its agents, timer, tasks and web views."""
    import faust

    delivery.install()

    pipeline = settings.pipeline
    partitions = pipeline.partitions
    datadir = Path(pipeline.state_dir) / "streams" / f"{settings.app_id}-{settings.web_port}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app: Any = faust.App(
        settings.app_id,
        broker=f"kafka://{pipeline.kafka_bootstrap}",
        store="memory://",
        datadir=str(datadir),
        web_host="127.0.0.1",
        web_bind=pipeline.bind_host,
        web_port=settings.web_port,
        topic_partitions=partitions,
        topic_replication_factor=1,
        processing_guarantee=settings.guarantee,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=SESSION_TIMEOUT_S / 4,
        autodiscover=False,
        web_enabled=True,
    )
    json_schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
    state = app.Table(STATE_TABLE, partitions=partitions, schema=json_schema)
    aggregates = app.Table(AGGREGATES_TABLE, partitions=partitions, schema=json_schema)
    members = MemberReplica()
    partials = PartialsReplica()
    processor = EventProcessor(
        MeteredMapping(state, STATE_TABLE),
        MeteredMapping(aggregates, AGGREGATES_TABLE),
        members,
        member_wait_s=settings.member_wait_s,
        dedupe_days=settings.dedupe_days,
        max_wait_step_s=max(MAX_WAIT_STEP_S, 2 * settings.recheck_s),
    )

    def topic(*names: str, **options: Any) -> Any:
        return app.topic(*names, key_serializer="raw", value_serializer="raw", **options)

    logical = {pipeline.topic(f.topic): f.topic for f in Family}
    seeking.install([*logical, settings.recheck_topic])
    inputs = topic(*logical)
    recheck = topic(settings.recheck_topic, partitions=partitions)
    enriched = {f: topic(pipeline.topic(f.enriched_topic)) for f in Family}
    deadletters = topic(pipeline.topic(DEADLETTER_TOPIC))
    members_out = topic(settings.members_topic)
    partials_out = topic(settings.partials_topic)
    snapshots = topic(pipeline.topic(AGGREGATES_TOPIC))

    async def produce(channel: Any, **message: Any) -> Any:
        """Send, and have the next commit wait for the broker's acknowledgement (`streams.delivery`)."""
        future = await channel.send(**message)
        delivery.TRACKER.track(future)
        return future

    async def send(outcome: Outcome, record: SourceRecord) -> list[Any]:
        """Send what `outcome` lists; returns the futures of the sends (resolved on acknowledgement)."""
        sent = []
        for family, key, value in outcome.enriched:
            sent.append(await produce(enriched[family], key=key.encode(), value=value))
            metrics.EVENTS_OUT.labels(topic=family.enriched_topic).inc()
        for dl_key, value, reason in outcome.dead_letters:
            sent.append(await produce(deadletters, key=dl_key, value=value))
            metrics.DEAD_LETTERS.labels(reason=reason).inc()
            metrics.EVENTS_OUT.labels(topic=DEADLETTER_TOPIC).inc()
        for company_id, member in outcome.members:
            sent.append(await produce(members_out, key=company_id.encode(), value=_encode.encode(member)))
        if outcome.duplicate:
            source = family_of_topic(record.topic)
            metrics.DUPLICATES.labels(family=source.value if source else record.topic).inc()
        return sent

    def decide(record: SourceRecord, position: Position, waited: float | None) -> Outcome:
        try:
            return processor.process(record, position, waited_s=waited)
        except Exception as exc:  # a bug must not stop the partition: the record becomes a dead letter
            log.exception("failed to process %s", record.origin)
            outcome = Outcome()
            value = build_dead_letter(
                reason=DeadLetterReason.SCHEMA_VIOLATION,
                detail=f"processing error: {exc!r}"[:500],
                original_topic=record.topic,
                original_partition=record.partition,
                original_offset=record.offset,
                original_key=record.key,
                original_value=record.value,
                event_id=None,
                event_type=None,
                failed_at=processor.clock(),
                max_value_bytes=DEAD_LETTER_VALUE_BYTES,
            )
            outcome.dead_letters.append((record.key, value, DeadLetterReason.SCHEMA_VIOLATION.value))
            return outcome

    async def decide_input(event: Any) -> bool:
        """Decide one input record in its partition's offset order; True once its outputs are sent."""
        message = event.message
        tp = message.tp
        admission = ORDER.admit(
            tp,
            message.offset,
            lambda first, last: seeking.fetched_gap(app.consumer, tp, first, last),
            time.monotonic(),
        )
        if admission is not Admission.PROCESS:
            expected = ORDER.expected(tp)
            if admission is Admission.RESEEK and expected is not None:
                await app.consumer.seek(tp, expected)
            seeking.release_unprocessed(app.consumer, message)
            return False
        record = SourceRecord(
            logical[message.topic],
            message.partition,
            message.offset,
            message.key,
            event.value or b"",
            is_replayed(message.headers),
        )
        metrics.EVENTS_IN.labels(topic=record.topic).inc()
        outcome = decide(record, Position(record.topic, message.partition, message.offset), None)
        await send(outcome, record)
        ORDER.processed(tp, message.offset)
        return True

    async def decide_inputs(stream: Any) -> None:
        await wait_for_replicas()
        await delivery.for_each_acked(stream, decide_input)

    async def recheck_partition(event: Any) -> bool:
        """On a tick of partition p: re-decide p's parked records; un-park them once acknowledged."""
        partition = event.message.partition
        position = Position(RECHECK, partition, event.message.offset)
        decided: list[str] = []
        sent: list[Any] = []
        for parked in processor.parked(partition):
            outcome = decide(parked.record, position, parked.waited_s)
            if not outcome.wait:
                sent.extend(await send(outcome, parked.record))
                decided.append(parked.key)
        acks = await asyncio.gather(*sent, return_exceptions=True)
        failures = [ack for ack in acks if isinstance(ack, BaseException)]
        if failures:  # keep them parked: the next tick decides them again (same markers)
            log.error("outputs of %d parked records not acknowledged: %r", len(decided), failures[0])
            return True
        processor.release(partition, decided)
        metrics.PARKED.labels(partition=str(partition)).set(processor.parking.count(partition))
        return True

    async def recheck_parked(stream: Any) -> None:
        await wait_for_replicas()
        await delivery.for_each_acked(stream, recheck_partition)

    async def send_ticks() -> None:
        """Tick every owned partition that has parked records (the recheck topic is only a clock);
        repeat input re-reads that were not answered (`streams.ordering`)."""
        for tp, offset in ORDER.overdue(time.monotonic()):
            if tp in app.consumer.assignment():
                await app.consumer.seek(tp, offset)
        for p in sorted(owned_partitions()):
            if processor.parking.has_parked(p):
                await recheck.send(key=b"tick", value=b"", partition=p)

    first_input = next(iter(logical))
    published: dict[int, int] = {}
    """Partition -> processor version of its last sent partial."""
    document_inputs: list[Any] = [None]
    last_document: dict[str, Any] = {}

    indexed_for: list[frozenset[int]] = [frozenset()]

    def owned_partitions() -> set[int]:
        """Partitions this worker owns and has recovered (empty while recovering)."""
        if not app.tables.recovery.completed.is_set() or app.rebalancing:
            indexed_for[0] = frozenset()
            return set()
        owned = frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == first_input)
        if owned != indexed_for[0]:  # a rebalance: re-index the recovered entities on next use
            for p in range(partitions):
                processor.forget_partition(p)
            published.clear()
            indexed_for[0] = owned
        return set(owned)

    def current_partials() -> list[Any]:
        owned = owned_partitions()
        local = [processor.tallies.partial(p) for p in owned]
        others = [entries for p, entries in partials.partials.items() if p not in owned]
        return [*local, *others]

    def document() -> dict[str, Any]:
        return render(current_partials(), members.active_profiles())

    async def publish_snapshots() -> None:
        """Send the partials of owned partitions that changed, and the document when anything changed.

        Cost: the aggregate entries of the changed partitions (kept as running sums by the
        processor), and one merge of all partials when the document's inputs changed.
        """
        owned = owned_partitions()
        for p in sorted(owned):
            version = processor.tallies.version(p)
            if published.get(p) != version:
                entries = processor.tallies.partial(p)
                await partials_out.send(key=str(p).encode(), value=_encode.encode(entries), partition=p)
                published[p] = version
        inputs = (
            frozenset(owned),
            tuple(published.get(p) for p in sorted(owned)),
            members.version,
            partials.version,
        )
        if 0 in owned and inputs != document_inputs[0]:
            document_inputs[0] = inputs
            doc = document()
            for section, data in doc.items():
                if last_document.get(section) != data:
                    value = {"section": section, "as_of": time.time(), "data": data}
                    await snapshots.send(key=section.encode(), value=_encode.encode(value))
                    last_document[section] = data

    stopped = asyncio.Event()
    replicas_ready = asyncio.Event()

    async def wait_for_replicas() -> None:
        """Let agents start once the member replica caught up (at most `REPLICA_WAIT_S`: rule 1 waits)."""
        try:
            await asyncio.wait_for(replicas_ready.wait(), REPLICA_WAIT_S)
        except TimeoutError:
            log.warning("member replica not caught up after %s s; processing anyway", REPLICA_WAIT_S)

    async def follow_replicas() -> None:
        handlers = {
            settings.members_topic: member_handler(members),
            settings.partials_topic: partials_handler(partials),
        }
        try:
            await follow_topics(pipeline.kafka_bootstrap, handlers, stopped=stopped, ready=replicas_ready)
        except Exception:
            log.exception("replica follower failed")
            raise

    async def aggregates_view(web: Any, request: Any) -> Any:
        return web.json(document())

    async def health_view(web: Any, request: Any) -> Any:
        return web.json({"replicas_ready": replicas_ready.is_set(), "partitions": sorted(owned_partitions())})

    async def metrics_view(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def stop_followers(app: Any, **kwargs: Any) -> None:
        stopped.set()

    async def forget_indexes(app: Any, revoked: Any, **kwargs: Any) -> None:
        """A rebalance starts: in-memory indexes of the partitions are rebuilt from recovered state."""
        for p in range(partitions):
            processor.forget_partition(p)

    app.agent(inputs, name="decide_inputs")(decide_inputs)
    app.agent(recheck, name="recheck_parked")(recheck_parked)
    app.page("/aggregates")(aggregates_view)
    app.page("/health")(health_view)
    app.page("/metrics")(metrics_view)
    app.timer(interval=settings.snapshot_s)(publish_snapshots)
    app.timer(interval=settings.recheck_s)(send_ticks)
    app.task(follow_replicas)
    app.on_before_shutdown.connect(stop_followers)
    app.on_partitions_revoked.connect(forget_indexes)

    return app
