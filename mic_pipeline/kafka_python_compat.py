"""Workarounds for defects of kafka-python (the Kafka client of the publisher and the sinks), each
with the upstream defect it answers and the versions it is for.

**An idempotent producer that never produces again after an outage.** kafka-python 3.0.12's
`TransactionManager.reset_producer_id` -- called when a batch already sent expires or runs out of
retries (the log says "Attempted to retry sending a batch but the producer id/epoch changed") --
drops the producer id but leaves the manager in state READY, and `init_producer_id` asks for a new
id only from state UNINITIALIZED (a transition the state machine refuses). The sender then loops
for ever on "no producer id": it neither sends nor expires a single batch, so every record handed to
it afterwards stays unanswered -- no acknowledgement, no failure, whatever the delivery timeout.
Seen on the 3-broker cluster with two brokers killed for ~30 s under a steady producer: 930
acknowledged before, 4 failed, then nothing answered for as long as the process ran, also with all
three brokers back (`tests/test_faults_outage.py`). Java's client goes back to UNINITIALIZED in the
same place. `heal_producer_id_reset` makes kafka-python do the same for idempotent, non-transactional
producers: the next sender loop asks for a new producer id, and produces (or fails by the delivery
timeout) again once the brokers answer. Gated by `PRODUCER_ID_VERSIONS`.

**An idempotent producer dead for good after an outage.** The new producer id is asked for while the
cluster may still be down; kafka-python 3.0.12 takes a timed-out `InitProducerId` request for a
fatal error ("Could not execute transactional request for unknown reasons: RequestTimedOutError")
and from then on fails every record at once, also after the brokers are back (seen right after the
fix above, same scenario). A fatal state cannot be left: Kafka's clients expect the application to
close such a producer and make a new one, so `producer_is_dead` tells the publisher and the sinks
when to (`producers.publisher`, `sinks.runner`). With both, the scenario above reports every record
handed over during the outage as failed and acknowledges every record after it.

**A partition assigned but never fetched again.** kafka-python 3.0 fetches a partition only while
its state is "fetchable": not paused, a valid position, not awaiting KIP-320 offset validation, not
pending revocation. Upstream fixed two ways of losing that for good -- #3106 (positions re-marked
for validation at every poll) and #3131 (a partition retained across an eager rebalance kept its
pending-revocation flag), both in the installed 3.0.12 -- and one more remains in 3.0.12, seen in
the 3-broker fault stage (after two of three brokers restarted, a fresh Parquet sink; 1 run in 7 of
`tests/test_faults_publisher.py` on 2026-11-30; kafka-python DEBUG log): the group rebalanced right
after the first join; at the start of it every partition was flagged pending revocation; the
consumer, group leader, sent its SyncGroup, then `poll(timeout_ms=200)` gave up waiting
("coordinator.poll: timeout in ensure_active_group; returning early"). The SyncGroup response came
back without error 70 ms later, but the assignment it carried was never applied: the consumer went
on as a member of the new generation (`need_rejoin: False`), heartbeating, with its 12 partitions
still flagged -- not fetchable, polling and fetching nothing, until it was replaced.

Whatever the path, the symptom is observable: `UnfetchableWatch` reports partitions that stayed
assigned, not paused by the sink and not fetchable for `limit_s`, and the runner then starts over
with a new consumer (a new member gets fresh partition states and reads on from the committed
offsets). That run healed this way: 60 s after the stall, a new consumer, everything landed (the
limit is now 20 s, `sinks.runner.RunnerConfig.unfetchable_limit_s`: at 60 s the web page read
DEGRADED before the new consumer's first commit).
Legitimate unfetchable spells -- an offset reset or a validation in flight, a listener running --
last milliseconds to seconds, far below the limit.

`WATCH_VERSIONS` gates the watch: on another kafka-python the watch is off, and a test fails until
someone checks whether the defect is still there (`tests/test_sinks_kafka_compat.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kafka
from kafka import TopicPartition

log = logging.getLogger(__name__)
PRODUCER_ID_VERSIONS = ("3.0.",)
"""kafka-python versions whose idempotent producer stays without a producer id after a reset."""

WATCH_VERSIONS = ("3.0.",)
"""kafka-python versions with a known way for an assigned partition to stay unfetchable."""


def producer_heal_needed(version: str = kafka.__version__) -> bool:
    """Whether the installed kafka-python needs `heal_producer_id_reset`."""
    return version.startswith(PRODUCER_ID_VERSIONS)


def heal_producer_id_reset(producer: Any, version: str = kafka.__version__) -> bool:
    """Make `producer` (a `kafka.KafkaProducer`) ask for a new producer id after a reset (the module
    doc); True when the workaround was installed (idempotent, non-transactional, affected version)."""
    from kafka.producer.transaction_manager import TransactionState

    manager = getattr(producer, "_transaction_manager", None)
    if manager is None or manager.is_transactional() or not producer_heal_needed(version):
        return False
    reset = manager.reset_producer_id

    def reset_and_ask_again() -> None:
        reset()
        with manager._lock:
            if manager._current_state is TransactionState.READY:
                log.warning("kafka producer id reset after a failed batch: asking the brokers for a new "
                            "one (mic_pipeline.kafka_python_compat)")
                manager._current_state = TransactionState.UNINITIALIZED

    manager.reset_producer_id = reset_and_ask_again
    return True


def producer_is_dead(producer: Any) -> bool:
    """Whether `producer`'s idempotence state is in kafka-python's fatal error (every send fails from
    now on: close it and make a new one)."""
    manager = getattr(producer, "_transaction_manager", None)
    return manager is not None and bool(manager.has_fatal_error())


def watch_needed(version: str = kafka.__version__) -> bool:
    """Whether the installed kafka-python needs `UnfetchableWatch`."""
    return version.startswith(WATCH_VERSIONS)


def why_unfetchable(consumer: Any, partition: TopicPartition) -> str:
    """What keeps `partition` from being fetched, in words (for the log line)."""
    subscription = consumer._subscription
    with subscription._lock:
        state = subscription.assignment.get(partition)
        if state is None:
            return "not assigned"
        reasons = [
            name
            for name, holds in (
                ("paused", state.paused),
                ("pending revocation", state._pending_revocation),
                ("no valid position", not state.has_valid_position),
                ("awaiting offset validation", state._awaiting_validation),
            )
            if holds
        ]
    return ", ".join(reasons) or "fetchable"


MIN_SIGHTINGS = 10
"""Observations (one per loop turn, i.e. per poll) a partition must have been unfetchable in: a loop
that spent `limit_s` in one long checkpoint during a rebalance saw it twice, not stuck."""


class UnfetchableWatch:
    """Partitions assigned to a kafka-python consumer, not paused, and not fetchable for `limit_s`
    (and at least `MIN_SIGHTINGS` observations in a row)."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._since: dict[TopicPartition, tuple[float, int]] = {}
        """Partition -> (first seen unfetchable, times seen since)."""

    def stuck(self, consumer: Any, now: float) -> list[TopicPartition]:
        """The partitions unfetchable (and not paused) at every observation since at least `limit_s`
        before `now`."""
        subscription = consumer._subscription
        with subscription._lock:
            unfetchable = {
                tp
                for tp in subscription.assigned_partitions()
                if not subscription.is_paused(tp) and not subscription.is_fetchable(tp)
            }
        self._forget(tp for tp in list(self._since) if tp not in unfetchable)
        for tp in unfetchable:
            since, seen = self._since.get(tp, (now, 0))
            self._since[tp] = (since, seen + 1)
        return sorted(
            tp
            for tp, (since, seen) in self._since.items()
            if now - since >= self.limit_s and seen >= MIN_SIGHTINGS
        )

    def reset(self) -> None:
        """Start over (a new consumer, or the sink paused its partitions on purpose)."""
        self._since.clear()

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            del self._since[tp]
