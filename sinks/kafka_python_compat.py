"""Workarounds for defects of kafka-python (the sinks' Kafka client), each with the upstream defect
it answers and the versions it is for.

**A partition assigned but never fetched again.** kafka-python 3.0 fetches a partition only while
its state is "fetchable": not paused, a valid position, not awaiting KIP-320 offset validation, not
pending revocation. Several paths of 3.0 left a partition unfetchable for good -- upstream #3106
(positions re-marked for validation at every poll) and #3131 (a partition retained across an eager
rebalance kept its pending-revocation flag), both fixed in the installed 3.0.12 -- and one more
remains in 3.0.12: after two of three brokers restart, a sink's consumer was seen holding 12 assigned
partitions, not paused, polling every 200 ms and fetching nothing for 4 minutes (py-spy: `poll`
cycling through `reset_offsets_if_needed`, `maybe_validate_positions`, `validate_offsets_if_needed`;
the 3-broker fault stage, 1 run in 7 on 2026-11-30). Whatever the path, the symptom is the same and
observable: `UnfetchableWatch` reports partitions that stayed assigned, not paused by the sink and not
fetchable for `limit_s`, and the runner then starts over with a new consumer (a new member gets
fresh partition states from the committed offsets). Legitimate unfetchable spells -- an offset reset
or a validation in flight, a leader moving -- last milliseconds to seconds, far below the limit.

`WATCH_VERSIONS` gates the watch: on another kafka-python the watch is off, and a test fails until
someone checks whether the defect is still there (`tests/test_sinks_kafka_compat.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kafka
from kafka import TopicPartition

WATCH_VERSIONS = ("3.0.",)
"""kafka-python versions with a known way for an assigned partition to stay unfetchable."""


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


class UnfetchableWatch:
    """Partitions assigned to a kafka-python consumer, not paused, and not fetchable for `limit_s`."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._since: dict[TopicPartition, float] = {}

    def stuck(self, consumer: Any, now: float) -> list[TopicPartition]:
        """The partitions unfetchable (and not paused) since at least `limit_s` before `now`."""
        subscription = consumer._subscription
        with subscription._lock:
            unfetchable = {
                tp
                for tp in subscription.assigned_partitions()
                if not subscription.is_paused(tp) and not subscription.is_fetchable(tp)
            }
        self._forget(tp for tp in list(self._since) if tp not in unfetchable)
        for tp in unfetchable:
            self._since.setdefault(tp, now)
        return sorted(tp for tp, since in self._since.items() if now - since >= self.limit_s)

    def reset(self) -> None:
        """Start over (a new consumer, or the sink paused its partitions on purpose)."""
        self._since.clear()

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            del self._since[tp]
