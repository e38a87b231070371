"""The sink runner: Kafka partitions in, durable batches out, offsets committed last.

One `SinkRunner` owns a plain kafka-python consumer (auto-commit off, `read_committed`), a producer
for dead letters and one `Sink`. Records are buffered per partition and a partition's buffer becomes
a `Batch` when it holds `max_batch_rows` records or its oldest record has waited `max_batch_wait_s`;
once the consumer has caught up with the broker (the high watermarks of the last fetches), every
buffer is due together after `live_batch_wait_s` (`sinks.buffers`). Batching is the only place the
wall clock is used; what a sink writes never depends on it.

Every batch due at the same moment (one per partition) is checkpointed together, so the sink runs
its quality gate once for all of them (its cost is per call, not per row). A group of
batches is checkpointed in this order, and only in this order (see `_checkpoint`):
  1. the sink writes the batch durably (rows landed / file renamed / quarantine kept) and returns
     the records that can never be written;
  2. those records are produced to the dead-letter topic and we wait for every acknowledgement;
  3. only then is the partition's offset (last offset + 1) committed.
A crash between any two steps replays the batch, which is harmless because every sink write is
idempotent (SQL by `event_id`, Parquet by deterministic file names; dead letters are keyed by their
original coordinates). Transient failures (`TransientSinkError`, broker errors) pause the assigned
partitions and retry the step with exponential backoff, so nothing is lost or skipped.

Before the first poll the sink is prepared (`Sink.prepare`: the SQL schema upgrade, the Parquet
directory and claim index), retried the same way, so a database that is down at start-up is waited
for, not a crash. Readiness means progress (`mic_pipeline.health.Health`): every failed attempt of a
step reports a problem of its kind (`database`, `disk`, `write`, `deadletter`, `commit`) with the
reason, logged once per attempt; every committed batch reports progress, which clears them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    RebalanceInProgressError,
)
from kafka.structs import OffsetAndMetadata

from mic_pipeline import metrics
from mic_pipeline.config import Settings
from mic_pipeline.health import Health
from mic_pipeline.kafka_clients import kafka_python_options
from mic_pipeline.kafka_python_compat import (
    UnfetchableWatch,
    heal_producer_id_reset,
    producer_is_dead,
    watch_needed,
    why_unfetchable,
)
from schemas.topics import DEADLETTER_TOPIC
from sinks.batch import Batch, Rejected, Sink, SourceRecord
from sinks.buffers import Buffers
from sinks.dead_letter_producer import produce_dead_letters
from sinks.errors import REFUSED, TransientSinkError

log = logging.getLogger(__name__)

T = TypeVar("T")


RENEWAL_BUDGET_S = 30.0
"""What a consumer renewed by `_ensure_fetching` may take to rejoin its group and checkpoint once
(a first quality-gate run took 17 s on CI's loaded machine)."""


@dataclass(frozen=True)
class RunnerConfig:
    """Batching and retry knobs of a runner."""

    group_id: str
    max_batch_rows: int = 5000
    max_batch_wait_s: float = 1.0
    live_batch_wait_s: float = 0.5
    """Once caught up, how long the oldest buffered record waits before all buffers are checkpointed
    together (`sinks.buffers`); capped at `max_batch_wait_s`."""
    poll_timeout_ms: int = 200
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    ack_timeout_s: float = 30.0
    session_timeout_ms: int = 10_000
    """How soon a crashed sink's partitions move to another member (kafka-python defaults to 45 s)."""
    max_poll_interval_ms: int = 300_000
    instance_id: str | None = None
    """Static group membership: a restarted sink with the same id gets its partitions back at once."""
    metadata_timeout_s: float = 30.0
    """How long to wait, before joining the group, for the topics' partition metadata."""
    connect_timeout_s: float = 30.0
    """How long a lost connection while the clients start is tried again (`SinkRunner._connect`)."""
    assignment_timeout_s: float = 20.0
    """A member left without partitions this long rejoins with a new consumer (see `_ensure_assigned`)."""
    unfetchable_limit_s: float = 20.0
    """An assigned partition not paused and not fetchable this long: a new consumer
    (`mic_pipeline.kafka_python_compat`, a kafka-python 3.0 defect). Short enough that the new
    consumer's join and first checkpoint (`RENEWAL_BUDGET_S`) end before the stuck partition's oldest
    record reads `not committing` on the web page (commit interval + lag margin, 62 s): at 60 s the
    quick demo's page read DEGRADED for a sink that healed this way. Legitimate unfetchable spells
    (an offset reset or validation in flight) last milliseconds to seconds."""


class Stopped(Exception):
    """The runner was asked to stop while waiting to retry; the batch stays uncommitted."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards assignment changes to the buffers (see `sinks.buffers` for why revoke keeps them).

    Under the eager protocol `on_partitions_revoked` is only a notification: kafka-python keeps the
    fetch position of every partition that is assigned again, so its buffer must be kept too.
    """

    def __init__(self, buffers: Buffers) -> None:
        self._buffers = buffers

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        log.info("rebalance: %d partitions revoked; buffers kept until the new assignment", len(revoked))

    def on_partitions_lost(self, lost: Sequence[TopicPartition]) -> None:
        self._buffers.lost(lost)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._buffers.assigned(assigned)


class SinkRunner:
    """Consumes `topics` in group `config.group_id` and checkpoints batches into `sink`."""

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        topics: Sequence[str],
        config: RunnerConfig,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.config = config
        self.health = health if health is not None else Health(f"sink-{sink.name}")
        self.health.problem("start", "starting: connecting to Kafka and the warehouse", sticky=True)
        self.buffers = Buffers(config.max_batch_rows, config.max_batch_wait_s, config.live_batch_wait_s)
        self._deadletter_topic = settings.topic(DEADLETTER_TOPIC)
        self._topics = list(topics)
        self._watch = UnfetchableWatch(config.unfetchable_limit_s) if watch_needed() else None
        self._consumer, self._producer = self._connect()
        self._unassigned_since: float | None = time.monotonic()
        self._should_stop: Callable[[], bool] = lambda: False
        self.committed_batches = 0

    def _connect(self) -> tuple[KafkaConsumer, KafkaProducer]:
        """The subscribed consumer and the dead-letter producer.

        A lost connection while they start (a node of a cluster killed during the handshake, seen in
        the 3-broker fault stage: the sink exited with 3) is tried again until
        `config.connect_timeout_s`; the live brokers answer the next attempt. A broker that cannot be
        reached at all fails with its own error (`KafkaTimeoutError`): `sinks.cli` says it and exits 3.
        """
        deadline = time.monotonic() + self.config.connect_timeout_s
        while True:
            consumer = None
            try:
                consumer = self._subscribed_consumer()
                return consumer, self._new_producer()
            except KafkaConnectionError as exc:
                if consumer is not None:
                    consumer.close(autocommit=False)
                if time.monotonic() >= deadline:
                    raise
                log.warning("connecting to Kafka: %s; trying again", exc)
                self.health.problem("start", f"connecting to Kafka: {exc}", sticky=True)
                time.sleep(1.0)

    def _subscribed_consumer(self) -> KafkaConsumer:
        """A new consumer that joins the group only once every topic's partitions are known.

        Joining before the metadata arrives (topics created a moment ago) makes the range assignor
        hand out nothing ("No partition metadata"), and kafka-python 3.0 was seen to stay in the
        group with no partitions after the follow-up rebalance; waiting first avoids that join.
        """
        config = self.config
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            **kafka_python_options(
                self.settings,
                reads=self._topics,
                group_id=config.group_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                max_poll_records=config.max_batch_rows,
                group_instance_id=config.instance_id,
                session_timeout_ms=config.session_timeout_ms,
                heartbeat_interval_ms=min(3_000, config.session_timeout_ms // 3),
                max_poll_interval_ms=config.max_poll_interval_ms,
            ),
        )
        deadline = time.monotonic() + config.metadata_timeout_s
        missing = list(self._topics)
        while missing and time.monotonic() < deadline:
            missing = [topic for topic in missing if not consumer.partitions_for_topic(topic)]
            if missing:
                time.sleep(0.2)
        if missing:
            log.warning("no partition metadata yet for %s; joining anyway", ", ".join(missing))
        consumer.subscribe(self._topics, listener=_Rebalance(self.buffers))
        return consumer

    def _ensure_assigned(self) -> None:
        """Rejoin with a new consumer when this member has had no partitions for too long.

        A member without partitions commits nothing and shows as lag; with 30 partitions per group
        that only happens when the group join went wrong, so starting over is the cure. Nothing is
        buffered without an assignment, so nothing is lost by closing the old consumer.
        """
        now = time.monotonic()
        if self._consumer.assignment():
            self._unassigned_since = None
            return
        if self._unassigned_since is None:
            self._unassigned_since = now
        elif now - self._unassigned_since > self.config.assignment_timeout_s:
            log.warning(
                "no partitions assigned for %.0f s; rejoining group %s with a new consumer",
                now - self._unassigned_since,
                self.config.group_id,
            )
            self._renew_consumer("unassigned")

    def _ensure_fetching(self) -> None:
        """Start over with a new consumer when assigned partitions stay unfetchable.

        kafka-python 3.0 can keep an assigned partition out of every fetch for good
        (`mic_pipeline.kafka_python_compat`): the sink would hold it and land nothing. What is buffered is
        checkpointed first; the new consumer reads on from the committed offsets.
        """
        if self._watch is None:
            return
        stuck = self._watch.stuck(self._consumer, time.monotonic())
        if not stuck:
            return
        why = "; ".join(
            f"{tp.topic}[{tp.partition}]: {why_unfetchable(self._consumer, tp)}" for tp in stuck[:3]
        )
        log.warning(
            "%d assigned partitions not fetched for %.0f s (%s%s); a kafka-python defect "
            "(mic_pipeline.kafka_python_compat): checkpointing, then rejoining group %s with a new consumer",
            len(stuck),
            self.config.unfetchable_limit_s,
            why,
            ", ..." if len(stuck) > 3 else "",
            self.config.group_id,
        )
        self._checkpoint_due(force=True)
        self.buffers.lost(list(self.buffers.by_partition))  # the new consumer reads them again
        self._renew_consumer("unfetchable")

    def _renew_consumer(self, reason: str) -> None:
        """Close the consumer (leaving the group, nothing committed) and join with a new one."""
        metrics.CONSUMER_RENEWALS.labels(sink=self.sink.name, reason=reason).inc()
        self._consumer.close(autocommit=False)
        self._consumer = self._subscribed_consumer()
        self._unassigned_since = time.monotonic()
        if self._watch is not None:
            self._watch.reset()

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Poll, batch and checkpoint until `should_stop()`; then checkpoint what is buffered."""
        self._should_stop = should_stop
        try:
            self._retrying("sink start-up", self.sink.prepare)
            self.health.clear("start")
            while not should_stop():
                try:
                    self._buffer(self._poll(self.config.poll_timeout_ms))
                    self._checkpoint_due(force=False)
                    self._ensure_assigned()
                    self._ensure_fetching()
                except REFUSED:
                    raise
                except KafkaError as exc:  # buffered batches stay; their writes are idempotent
                    self._broker_trouble("sink loop", exc)
            self._checkpoint_due(force=True)
        except Stopped:
            log.info("stopped while retrying; uncommitted batches will be replayed")

    def _poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        """One consumer poll. A broker that went away (a node of a cluster killed, a connection
        refused while leadership moves) is transient mid-run: the consumer reconnects on its next
        poll, so this records the problem, waits a moment and returns nothing; a refusal of this
        client's rights (`REFUSED`) is raised."""
        try:
            polled: dict[TopicPartition, list[Any]] = self._consumer.poll(timeout_ms=timeout_ms)
        except REFUSED:
            raise
        except KafkaError as exc:
            self._broker_trouble("poll", exc)
            return {}
        return polled

    def _broker_trouble(self, what: str, exc: Exception) -> None:
        """A broker error mid-run other than a refusal: not ready with the reason, a short pause, go
        on (kafka-python reconnects, leadership moves to a live broker)."""
        log.warning("%s: broker error (%s); going on", what, exc)
        self.health.problem("broker", f"{what}: {exc}")
        time.sleep(0.5)

    def close(self) -> None:
        """Close the consumer (leaving the group), the producer and the sink."""
        self._consumer.close()
        self._producer.close()
        self.sink.close()

    def _buffer(self, polled: dict[TopicPartition, list[Any]]) -> None:
        now = time.monotonic()
        for tp, messages in polled.items():
            metrics.EVENTS_IN.labels(topic=tp.topic).inc(len(messages))
            records = [SourceRecord(m.topic, m.partition, m.offset, m.key, m.value) for m in messages]
            self.buffers.add(tp, records, now)

    def _lag(self) -> dict[TopicPartition, int | None]:
        """Per buffered partition: the records the broker held beyond the buffer at the last fetch
        (its high watermark), None when unknown (not fetched yet, or no longer assigned)."""
        lag: dict[TopicPartition, int | None] = {}
        for tp, buffer in self.buffers.by_partition.items():
            if buffer.records:
                try:
                    highwater = self._consumer.highwater(tp)
                except IllegalStateError:  # revoked meanwhile: its buffer waits for the new assignment
                    highwater = None
                lag[tp] = None if highwater is None else highwater - buffer.records[-1].offset - 1
        return lag

    def _checkpoint_due(self, *, force: bool) -> None:
        while batches := self.buffers.all_due(time.monotonic(), force=force, lag=self._lag()):
            if not self._checkpoint(batches):
                return  # partitions revoked meanwhile: their new owners replay from the committed offsets
            now = time.monotonic()
            for batch in batches:
                self.buffers.committed(batch, now)

    def _checkpoint(self, batches: list[Batch]) -> bool:
        """Make `batches` durable, then commit their offsets. False if a partition was revoked."""
        # 1. Flush the sink: the batches are durable (or quarantined) before anything else happens.
        started = time.perf_counter()
        results = self._retrying("sink write", lambda: self.sink.write_group(batches))
        metrics.BATCH_WRITE_SECONDS.labels(sink=self.sink.name).observe(time.perf_counter() - started)
        rejected = [item for items in results for item in items]
        # 2. Produce the dead letters and wait for all their acknowledgements.
        if rejected:
            self._retrying("dead-letter produce", lambda: self._produce_dead_letters(rejected))
        # 3. Only now commit the offset after each batch's last record.
        commit = {
            TopicPartition(b.topic, b.partition): OffsetAndMetadata(b.last_offset + 1, "", -1)
            for b in batches
        }
        try:
            self._retrying("offset commit", lambda: self._commit(commit))
        except CommitFailedError:
            log.warning("partitions revoked before commit; their new owners replay them (idempotent)")
            return False
        except RebalanceInProgressError:
            # The group is rebalancing: only the main loop's (unpaused) poll completes the rejoin.
            # The batches stay buffered; partitions still ours are written again (idempotent) and
            # committed, the others are replayed by their new owners from the committed offsets.
            log.info("rebalance in progress at commit; checkpointing again after it")
            return False
        self.committed_batches += len(batches)
        self.health.progress()
        return True

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        try:
            self._consumer.commit(offsets=offsets)
        except (CommitFailedError, RebalanceInProgressError, *REFUSED):
            raise
        except KafkaError as exc:
            raise TransientSinkError(f"offset commit failed: {exc}", kind="commit") from exc

    def _produce_dead_letters(self, rejected: list[Rejected]) -> None:
        if producer_is_dead(self._producer):  # after an outage (`mic_pipeline.kafka_python_compat`)
            log.warning("the dead-letter producer is in a fatal state after a broker outage; replacing it")
            try:
                replacement = self._new_producer()
            except KafkaError as exc:
                raise TransientSinkError(f"no new dead-letter producer: {exc}", kind="deadletter") from exc
            dead, self._producer = self._producer, replacement
            try:
                dead.close(timeout=1.0)
            except KafkaError as exc:
                log.info("closing the dead producer: %s", exc)
        produce_dead_letters(self._producer, self._deadletter_topic, rejected, self.config.ack_timeout_s)

    def _new_producer(self) -> KafkaProducer:
        producer = KafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            **kafka_python_options(self.settings, acks="all", linger_ms=5),
        )
        heal_producer_id_reset(producer)
        return producer

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        """Run `action`, retrying `TransientSinkError` with backoff while partitions are paused."""
        delay = self.config.backoff_initial_s
        while True:
            try:
                return action()
            except TransientSinkError as exc:
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                self.health.problem(exc.kind, f"{what}: {exc}")
            self._wait_paused(delay)
            delay = min(delay * 2, self.config.backoff_max_s)

    def _wait_paused(self, seconds: float) -> None:
        """Sleep `seconds` while staying in the group: pause fetching, keep polling."""
        assigned = list(self._consumer.assignment())
        self._consumer.pause(*assigned)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if self._should_stop():
                    raise Stopped
                remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
                polled = self._poll(min(remaining_ms, 200))
                self._buffer(polled)
        finally:
            self._consumer.resume(*[tp for tp in assigned if tp in self._consumer.assignment()])
