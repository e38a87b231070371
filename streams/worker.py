"""The stream worker: fetched batches in, decisions, outputs and state out, checkpoints last.

One `StreamWorker` per faust app (it is the app's `batch_handler`, `streams.faust_compat`). It owns,
per input partition number it is assigned, a `PartitionRuntime`: the partition's state
(`streams.store.PartitionStore`, rebuilt from the changelog by `streams.recovery`) and a fresh
`EventProcessor` over it -- a new one for every assignment. Partition `p` of every input topic is
assigned to the same worker (faust's assignor, same partition counts), so one store holds
everything about the companies of partition `p`.

For each fetched batch of one partition (`on_batch`, membership partitions first) the worker
admits the records in offset order (`streams.ordering`), decides each with the processor, appends
the outputs (enriched records, dead letters, member states) to the partition of their topic with
the same number (`streams.outputs`), and notes the batch's last offset as decided. Parked records
(rule 1) are re-decided right after a membership batch of their partition (their member may just
have arrived) and on a timer every `recheck_s` (which also advances their waiting time). About
every `commit_s` the checkpoint makes everything durable: outputs, then state, then offsets
(`streams.checkpoint`). A rebalance or a stop runs a last checkpoint first.

Everything that decides or writes runs under one lock, in the consumer's drain task or in faust's
rebalance and shutdown callbacks, so decisions never interleave with a checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from mic_pipeline import metrics
from mic_pipeline.health import Health
from schemas.topics import DEADLETTER_TOPIC, Family, family_of_topic
from streams import faust_compat
from streams.checkpoint import Checkpoint
from streams.merge import InputMerge
from streams.ordering import Admission, OffsetOrder
from streams.outputs import DeliveryError, OutputWriter
from streams.partitions import PartitionRuntime, Partitions
from streams.processor import EventProcessor
from streams.records import RECHECK, Outcome, Position, SourceRecord, is_replayed
from streams.recovery import claim
from streams.replica import MemberReplica, PartialsReplica
from streams.settings import StreamSettings
from streams.store import PartitionStore, key_kind

log = logging.getLogger(__name__)
PAUSE_BUFFERED = 2_000
"""A topic-partition with this many buffered records is not fetched until it is down to `RESUME_BUFFERED`
(the merge waits for the others; bounds the worker's memory on a backlog)."""
RESUME_BUFFERED = 500
STALL_S = 30.0
"""A worker whose partitions lag while no checkpoint advanced their offsets for this long is not ready."""
_encode = msgspec.json.Encoder(decimal_format="string").encode


class StreamWorker:
    """Decides fetched batches (see the module doc); `faust_compat.BatchHandler`."""

    def __init__(self, settings: StreamSettings, app: Any) -> None:
        pipeline = settings.pipeline
        self.settings = settings
        self.app = app
        self.logical = {pipeline.topic(f.topic): f.topic for f in Family}
        self.membership_topic = pipeline.topic(Family.MEMBER.topic)
        self.enriched = {f: pipeline.topic(f.enriched_topic) for f in Family}
        self.deadletters = pipeline.topic(DEADLETTER_TOPIC)
        self.order = OffsetOrder()
        self.merge = InputMerge()
        self._input_tps = {p: [(topic, p) for topic in self.logical] for p in range(pipeline.partitions)}
        self._assigned: set[Any] = set()
        self._paused: set[Any] = set()
        self.members = MemberReplica()
        self.partials = PartialsReplica()
        self.health = Health("streams")
        self.partitions = Partitions(settings, self.members, self.health, self._claim)
        self.ready = asyncio.Event()
        """Set once the producer runs and the member replica caught up."""
        self.replicas_ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self.producer: Any = None
        self._producer_started = asyncio.Event()
        self.outputs: OutputWriter | None = None
        self.checkpoint: Checkpoint | None = None
        self._lock = asyncio.Lock()
        self._widths: dict[str, int] = {}
        self._rechecked_at = 0.0
        self._recheck_seq = 0
        self._advanced_at = time.monotonic()
        self.health.problem("start", "starting: producer and member replica not ready yet")

    # --- life cycle -------------------------------------------------------------------------------

    async def start_producer(self) -> None:
        """Start the producer of outputs and changelog records (`acks=all`, idempotent)."""
        from aiokafka import AIOKafkaProducer

        from mic_pipeline.kafka_clients import aiokafka_options
        from streams.outputs import BATCH_BYTES, MAX_REQUEST_BYTES

        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.pipeline.kafka_bootstrap,
            **aiokafka_options(
                self.settings.pipeline,
                acks="all",
                enable_idempotence=True,
                max_batch_size=BATCH_BYTES,
                max_request_size=MAX_REQUEST_BYTES,
                linger_ms=0,
            ),
        )
        await producer.start()
        self.producer = producer
        for topic in [*self.enriched.values(), self.deadletters, self.settings.members_topic,
                      self.settings.changelog_topic]:
            self._widths[topic] = len(await producer.partitions_for(topic))
        self.outputs = OutputWriter(producer, counted=_count_out)
        self.checkpoint = Checkpoint(
            self.outputs,
            self.settings.changelog_topic,
            lambda offsets: faust_compat.commit_offsets(self.app, offsets),
            interval_s=self.settings.commit_s,
        )
        self._producer_started.set()

    async def _claim(self, partitions: list[int]) -> dict[int, int]:
        """Claim the changelog of `partitions` before loading them (`streams.recovery.claim`)."""
        await self._producer_started.wait()
        worker = f"{socket.gethostname()}:{os.getpid()}:{self.settings.web_port}"
        return await claim(self.producer, self.settings.changelog_topic, partitions, worker)

    async def wait_until_ready(self, replica_wait_s: float) -> None:
        """Ready once the member replica caught up (at most `replica_wait_s`: rule 1 waits anyway)."""
        try:
            await asyncio.wait_for(self.replicas_ready.wait(), replica_wait_s)
        except TimeoutError:
            log.warning("member replica not caught up after %s s; deciding anyway", replica_wait_s)
        self.ready.set()
        self.health.clear("start")

    async def stop(self) -> None:
        """A graceful stop: one last checkpoint, then the producer stops."""
        self.stopped.set()
        async with self._lock:
            if self.checkpoint is not None:
                try:
                    await self._checkpoint()
                except DeliveryError:
                    log.exception("last checkpoint failed: the records since the last commit are re-read")
        if self.producer is not None:
            await self.producer.stop()

    # --- rebalances -----------------------------------------------------------------------------------

    async def on_revoked(self, revoked: Iterable[Any]) -> None:
        """A rebalance starts: checkpoint while the partitions are still ours."""
        revoked = set(revoked)
        await self.partitions.claims_settled()  # before the group can give them to another worker
        async with self._lock:
            if self.checkpoint is not None and self.ready.is_set():
                await self._checkpoint()
                self.checkpoint.forget(revoked)
            self.merge.drop(list(revoked))  # not decided: read again from the committed offsets
            for tp in revoked:
                self.order.forget(tp)
            self._assigned -= revoked
            self._paused -= revoked

    async def on_assigned(self, assigned: Iterable[Any]) -> None:
        """Keep the stores of partitions whose changelog nobody wrote since; load the others."""
        assigned = set(assigned)
        partitions = {tp.partition for tp in assigned if tp.topic in self.logical}
        async with self._lock:
            self._assigned = {tp for tp in assigned if tp.topic in self.logical}
            log.info("assigned input partitions %s", sorted(partitions))
            self._input_tps.update({p: [(t, p) for t in self.logical] for p in partitions})
            await self.partitions.assign(partitions)

    def owned(self) -> dict[int, PartitionRuntime]:
        """The partitions this worker decides now (assigned and recovered)."""
        if self.app.rebalancing:
            return {}
        return dict(self.partitions.items())

    def trace(self, event_id: str) -> list[dict[str, Any]]:
        """What this worker knows of `event_id` (`Partitions.trace`); nothing while rebalancing."""
        return [] if self.app.rebalancing else self.partitions.trace(event_id)

    # --- batches ------------------------------------------------------------------------------------

    def sought(self, tp: Any, offset: int) -> None:
        self.order.sought(tp, offset)

    async def on_batch(self, records: Mapping[Any, list[Any]], generation: int) -> None:
        await self.ready.wait()
        consumer = self.app.consumer
        async with self._lock:
            for tp, batch in records.items():
                if generation != self.app.consumer_generation_id or not consumer.flow_active:
                    break  # a rebalance started: faust seeks back to the committed offsets after it
                if batch and tp.topic in self.logical:
                    await self._accept(tp, batch)
            await self._decide_buffered(generation)
            await self._after_batches()

    async def on_idle(self) -> None:
        async with self._lock:
            if self.ready.is_set():
                await self._decide_buffered(self.app.consumer_generation_id)
                await self._after_batches()

    async def _accept(self, tp: Any, batch: list[Any]) -> None:
        """Buffer a fetched batch in offset order (`streams.ordering`), or seek back to a hole."""
        admitted = self.order.admit(tp, [message.offset for message in batch])
        if admitted.admission is Admission.RESEEK:
            assert admitted.seek_to is not None
            await self.app.consumer.seek(tp, admitted.seek_to)
            return
        self.merge.add(tp, batch[admitted.start :] if admitted.start else batch)
        self.order.accepted(tp, batch[-1].offset)

    async def _decide_buffered(self, generation: int) -> None:
        """Decide what the merge releases, partition by partition (`streams.merge`)."""
        for p in sorted(self.merge.partitions()):
            if generation != self.app.consumer_generation_id or not self.app.consumer.flow_active:
                return
            runtime = await self.partitions.runtime(p)
            if runtime is None or generation != self.app.consumer_generation_id:
                return
            self._decide_records(runtime, self.merge.take(p, self._input_tps[p], self._lagging))
        self._flow_control()

    def _decide_records(self, runtime: PartitionRuntime, taken: list[tuple[Any, Any]]) -> None:
        processor = runtime.processor
        partition = runtime.store.partition
        checkpoint = self.checkpoint
        assert checkpoint is not None
        counts: Counter[str] = Counter()
        for tp, message in taken:
            topic = self.logical[tp[0]]
            offset = message.offset
            headers = message.headers
            record = SourceRecord(
                topic,
                partition,
                offset,
                message.key,
                message.value if message.value is not None else b"",
                bool(headers) and is_replayed(headers),
            )
            outcome = self._decide(processor, record, Position(topic, partition, offset), None)
            self._stage(outcome, partition, topic)
            checkpoint.decided(tp, offset + 1)
            counts[topic] += 1
        for topic, n in counts.items():
            metrics.EVENTS_IN.labels(topic=topic).inc(n)
        if counts.get(Family.MEMBER.topic):
            self._recheck(runtime, tick=False)

    def _lagging(self, tp: Any) -> bool:
        """Whether the broker has records of `tp` that are not buffered yet."""
        expected = self.order.expected(tp)
        end = self.app.consumer.highwater(tp) if tp in self._assigned else None
        return expected is not None and end is not None and expected < end

    def _flow_control(self) -> None:
        """Pause fetching a topic-partition whose buffer is large (the merge waits for the others)."""
        consumer = self.app.consumer
        full = {tp for tp in self._assigned if self.merge.buffered(tp) >= PAUSE_BUFFERED}
        drained = {tp for tp in self._paused if self.merge.buffered(tp) <= RESUME_BUFFERED}
        if full - self._paused:
            consumer.pause_partitions(full - self._paused)
            self._paused |= full
        if drained:
            consumer.resume_partitions(drained)
            self._paused -= drained

    def _decide(
        self, processor: EventProcessor, record: SourceRecord, position: Position, waited: float | None
    ) -> Outcome:
        try:
            return processor.process(record, position, waited_s=waited)
        except Exception as exc:  # a bug must not stop the partition: the record becomes a dead letter
            log.exception("failed to decide %s", record.origin)
            return processor.failed(record, position, exc)

    def _stage(self, outcome: Outcome, p: int, topic: str) -> None:
        """Append what `outcome` lists to the outputs (partition = `p`, the record's partition number;
        `topic`: the record's logical topic)."""
        outputs = self.outputs
        assert outputs is not None
        widths = self._widths
        for family, key, value in outcome.enriched:
            topic = self.enriched[family]
            outputs.append(topic, p % widths[topic], key.encode(), value)
        for dl_key, value, reason in outcome.dead_letters:
            outputs.append(self.deadletters, p % widths[self.deadletters], dl_key, value)
            metrics.DEAD_LETTERS.labels(reason=reason).inc()
        members = self.settings.members_topic
        for company_id, member in outcome.members:
            outputs.append(members, p % widths[members], company_id.encode(), _encode(member))
        if outcome.duplicate:
            source = family_of_topic(topic)
            metrics.DUPLICATES.labels(family=source.value if source else topic).inc()

    # --- parked records, checkpoints, health --------------------------------------------------------

    def _recheck(self, runtime: PartitionRuntime, *, tick: bool) -> None:
        """Re-decide the partition's parked records that may be decided now (rule 1); `tick`
        advances their waiting time. Released at once (`EventProcessor.settle`): the checkpoint
        writes the release only after their outputs are acknowledged; a decision that depended on
        the waiting time is held until the checkpoint made it durable (`_send_held`)."""
        processor = runtime.processor
        p = runtime.store.partition
        if not processor.parking.has_parked(p):
            return
        self._recheck_seq += 1
        decided = processor.recheck(p, Position(RECHECK, p, self._recheck_seq), tick=tick)
        for item, outcome in processor.settle(p, decided):
            self._stage(outcome, p, item.record.topic)
        metrics.PARKED.labels(partition=str(p)).set(processor.parking.count(p))

    def _send_held(self, stores: list[PartitionStore]) -> int:
        """Hand the outputs of the decisions held in `stores` (`streams.outbox`) to the writer: the
        checkpoint calls this once it made those stores durable (a store loaded meanwhile is not)."""
        sent = 0
        for runtime in self.partitions:
            if not any(runtime.store is store for store in stores):
                continue
            for origin, outcome in runtime.processor.take_held():
                topic, partition, _ = origin.rsplit("/", 2)
                self._stage(outcome, int(partition), topic)
                sent += 1
        return sent

    async def _after_batches(self) -> None:
        assert self.outputs is not None and self.checkpoint is not None
        now = time.monotonic()
        if now - self._rechecked_at >= self.settings.recheck_s:
            self._rechecked_at = now
            for runtime in self.owned().values():
                self._recheck(runtime, tick=True)
        await self.outputs.submit()
        if self.checkpoint.due():
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        """Run a checkpoint; a delivery failure stops the worker (its stores are no longer exact)."""
        assert self.checkpoint is not None and self.outputs is not None
        stores = [runtime.store for runtime in self.partitions]
        kinds = Counter(key_kind(key) for store in stores for key in store.changed_keys())
        try:
            result = await self.checkpoint.commit(stores, on_durable=self._send_held)
        except DeliveryError as exc:
            log.critical("checkpoint failed, stopping the worker: %s", exc)
            self.health.problem("delivery", f"outputs not acknowledged: {exc}", sticky=True)
            await self.app.crash(exc)
            raise
        for kind, n in kinds.items():
            metrics.CHANGELOG_RECORDS.labels(kind=kind).inc(n)
        self.partitions.written(self.outputs.ends)
        if result.committed and result.offsets:
            self._advanced_at = time.monotonic()
            self.health.progress()

    def lagging(self) -> str | None:
        """Why the worker is stalled, if its partitions lag while no checkpoint advanced for `STALL_S`."""
        if self.checkpoint is None or time.monotonic() - self._advanced_at < STALL_S:
            return None
        consumer = self.app.consumer
        lag = 0
        for tp in consumer.assignment():
            if tp.topic in self.logical:
                end = consumer.highwater(tp)
                position = self.checkpoint.committed(tp)
                if end is not None and position is not None and end > position:
                    lag += end - position
        if not lag:
            return None
        idle = time.monotonic() - self._advanced_at
        return f"partitions lag by {lag} records and no commit advanced for {idle:.0f} s"


def _count_out(topic: str, n: int) -> None:
    metrics.EVENTS_OUT.labels(topic=topic).inc(n)
