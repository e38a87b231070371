"""A zombie stream worker on the 3-broker cluster, mid-traffic: worker A is frozen (SIGSTOP) past its
session timeout while worker B takes its partitions over, then resumed (SIGCONT): it runs one more
checkpoint before it learns it lost them. The zombie must not write what the successor wrote.

The owner fencing of the state changelog (`faults_fencing`) is what stops it: B claims each
partition it takes (the claim's offset is its epoch), every state record carries its writer's epoch,
and a load skips records of an epoch older than the latest claim before them. A checkpoints only at
rebalances and its stop here, so at the freeze it certainly holds decided state not yet in the
changelog: its late checkpoint writes it, behind B's claims. A then rejoins and claims partitions
again; a fresh worker C joins, A and B stop gracefully, and C -- which never owned a partition
before -- loads every partition from the changelog and decides the rest of the traffic. Lifecycle
events (order cancellations, member departures) depend on the loaded state, so a zombie's value
winning over its successor's shows as wrong dead letters or missing rows in the reconciliation
(`faults_reconcile`) that ends the test, with C as the aggregates worker. The changelog is read back
too: B claimed every partition it took over after the freeze, the zombie wrote behind those claims,
every stale record is the zombie's (A's epoch from before the freeze, after B's claim), and C's
loads skipped exactly those.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from faults_fencing import ChangelogTail, Entry, changelog_ends, fenced_in_log, read_changelog
from faults_pipeline import Pipeline, Proc
from faults_steps import (
    assert_every_record_acknowledged_and_accounted,
    owned,
    stop_sending_and_reconcile,
    stream_outputs,
    wait_for_growth,
)
from faults_traffic import Traffic
from streams_kafka import wait_until

from mic_pipeline.config import Settings

if TYPE_CHECKING:
    from faults_cluster import Cluster

pytest_plugins = ["faults_cluster"]
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

RATE = 150
"""Records/s of the producer during the fault."""
FROZEN_COMMIT_S = "600"
"""A's checkpoint interval, longer than the test: A checkpoints only at rebalances and its stop, so
when it is frozen it certainly holds decided state that is not in the changelog yet, and the
checkpoint it runs when it resumes (before it learns it lost its partitions) certainly writes it."""


def _wait_for_split(pipeline: Pipeline, first: Proc, second: Proc) -> list[int]:
    """Until each of the two workers decides some partitions, together all of them, none twice; the
    first's."""
    every = list(range(pipeline.settings.partitions))
    split: list[list[int]] = []

    def shared() -> bool:
        pipeline.check_alive()
        split[:] = [sorted(owned(first)), sorted(owned(second))]
        return all(split) and sorted(split[0] + split[1]) == every

    wait_until(shared, 90, f"the two workers do not share the partitions ({split})", interval_s=0.5)
    return split[0]


def _wait_for_takeover(
    pipeline: Pipeline, successor: Proc, frozen: list[int], frozen_at: dict[int, int]
) -> dict[int, Entry]:
    """Until `successor` decides every partition and, on each partition of the frozen worker, has
    claimed it (a claim after the freeze: the frozen worker writes nothing) and written state with
    that claim's epoch; its first claim after the freeze on each of those partitions."""
    every = list(range(pipeline.settings.partitions))
    claims: dict[int, Entry] = {}

    def taken_over(tail: ChangelogTail) -> bool:
        pipeline.check_alive()
        changes = tail.read()
        for p in frozen:
            after = changes.claims(p)
            if after and any(entry.epoch == after[0].offset for entry in changes.state(p, after[0].offset)):
                claims[p] = after[0]
        return len(claims) == len(frozen) and sorted(owned(successor)) == every

    with ChangelogTail(pipeline.settings, frozen_at) as tail:
        wait_until(partial(taken_over, tail), 90, f"{successor.name} did not take over and write "
                   f"partitions {frozen} (done: {claims})", interval_s=0.5)
    return claims


def _wait_for_claim_by(pipeline: Pipeline, claimant: str, since: dict[int, int]) -> Entry:
    """Until `claimant` claims a partition at an offset after `since` (it was assigned one and
    loads it); that claim."""
    found: list[Entry] = []

    def claimed(tail: ChangelogTail) -> bool:
        pipeline.check_alive()
        changes = tail.read()
        found[:] = [e for p in changes.partitions for e in changes.claims(p) if e.claimant == claimant]
        return bool(found)

    with ChangelogTail(pipeline.settings, since) as tail:
        wait_until(partial(claimed, tail), 90, f"{claimant} claimed no partition again", interval_s=0.5)
    return found[0]


def _owns_every_partition(pipeline: Pipeline, worker: Proc) -> bool:
    pipeline.check_alive()
    return sorted(owned(worker)) == list(range(pipeline.settings.partitions))


@dataclass(frozen=True)
class Freeze:
    """What the freeze of A left in the changelog."""

    frozen_at: dict[int, int]
    """The changelog's end offsets when A was frozen."""
    epochs: dict[int, Entry]
    """A's claim of each of its partitions, before the freeze (its epoch there)."""
    takeover: dict[int, Entry]
    """B's first claim of each of them after the freeze."""

    @property
    def zombie(self) -> str:
        """A's name in its claims."""
        return str(next(iter(self.epochs.values())).claimant)


def _freeze_until_taken_over(pipeline: Pipeline, first: Proc, second: Proc, frozen: list[int]) -> Freeze:
    """SIGSTOP of `first` until `second` took over and wrote its partitions `frozen` (A stays
    frozen: the caller resumes it)."""
    settings = pipeline.settings
    first.pause()
    frozen_at = changelog_ends(settings)
    before = read_changelog(settings)
    epochs: dict[int, Entry] = {}
    for p in frozen:
        claim = before.latest_claim(p, frozen_at[p])
        assert claim is not None, f"{first.name} owns partition {p} but never claimed it"
        epochs[p] = claim
    assert len({claim.claimant for claim in epochs.values()}) == 1, epochs
    return Freeze(frozen_at, epochs, _wait_for_takeover(pipeline, second, frozen, frozen_at))


def _hand_over_to_a_fresh_worker(
    pipeline: Pipeline, first: Proc, second: Proc
) -> tuple[Proc, dict[str, int]]:
    """A new worker joins (decisions go on meanwhile), then `first` and `second` stop gracefully:
    it loads every partition from the changelog and decides on that. The new worker, and the
    others' exit statuses."""
    outputs = partial(stream_outputs, pipeline.settings)
    third = pipeline.spawn_worker()
    wait_for_growth(outputs, 150, "stream outputs after the frozen worker resumed", pipeline)
    pipeline.wait_started(third)
    with ThreadPoolExecutor(2) as pool:
        stopping = {proc.name: pool.submit(proc.stop) for proc in (first, second)}
        statuses = {name: status.result() for name, status in stopping.items()}
    wait_until(partial(_owns_every_partition, pipeline, third), 120, f"{third.name} owns every partition")
    wait_for_growth(outputs, 300, f"stream outputs of {third.name}", pipeline)
    return third, statuses


def _assert_only_the_zombie_was_fenced(freeze: Freeze, stale: list[Entry], fenced: dict[int, int]) -> None:
    """B claimed A's partitions (not A); every stale record is the zombie's: on a partition B took
    over, after B's claim, with A's epoch from before the freeze; there are some (A certainly held
    unwritten state, `FROZEN_COMMIT_S`); and the fresh worker's loads skipped exactly those
    (`fenced`: the counts per partition it logged)."""
    for p, claim in freeze.takeover.items():
        assert claim.claimant != freeze.zombie, (p, claim, freeze.zombie)
    strays = [entry for entry in stale if entry.partition not in freeze.takeover
              or entry.offset <= freeze.takeover[entry.partition].offset
              or entry.epoch != freeze.epochs[entry.partition].offset]
    assert not strays, f"records behind a newer claim not written by the zombie: {strays[:5]}"
    assert stale, ("the zombie wrote nothing after its successor's claim, so the test no longer tests "
                   "the fencing (if a worker now refuses to checkpoint once it lost its membership, "
                   "this check goes)")
    assert fenced == dict(Counter(entry.partition for entry in stale)), fenced


def test_a_worker_frozen_past_its_session_timeout_cannot_overwrite_its_successors_state(
    cluster: Cluster, faults_settings: Settings, tmp_path: Path
) -> None:
    settings = faults_settings
    traffic = Traffic(settings, seed=67)
    batch = traffic.take(30_000, hostile=40)  # more than the fault needs: the sender is stopped after
    pipeline = Pipeline(settings, tmp_path / "logs")
    began = time.monotonic()
    phases: dict[str, float] = {}
    notes: dict[str, Any] = {"phases_s": phases, "load_average_at_start": os.getloadavg()[0]}
    sender = None
    try:
        sender = traffic.send_in_background(batch, rate=RATE)
        # everything starts at once (starting is CPU-bound here); A checkpoints rarely (module doc)
        first = pipeline.spawn_worker(env={"MIC_STREAMS_COMMIT_S": FROZEN_COMMIT_S})
        second, *sinks = pipeline.spawn_worker(), pipeline.spawn_sink("sql"), pipeline.spawn_sink("parquet")
        for proc in (first, second, *sinks):
            pipeline.wait_started(proc)
        frozen = _wait_for_split(pipeline, first, second)
        # A decides records of its partitions after its last checkpoint (the rebalance B caused)
        wait_for_growth(partial(stream_outputs, settings, frozen), 100, f"outputs of {first.name}", pipeline)
        phases["started"] = round(time.monotonic() - began, 1)

        # A frozen past its session timeout: B takes its partitions over and writes their state
        paused_at = time.monotonic()
        freeze = _freeze_until_taken_over(pipeline, first, second, frozen)
        resumed_at = changelog_ends(settings)
        first.resume()
        resumed = time.monotonic()
        phases["frozen"] = round(resumed - paused_at, 1)
        notes["frozen_partitions"] = frozen
        notes["takeover_claims"] = {p: claim.offset for p, claim in freeze.takeover.items()}

        # the zombie returns, runs its late checkpoint, learns of the rebalance and claims again
        _wait_for_claim_by(pipeline, freeze.zombie, resumed_at)
        phases["rejoined"] = round(time.monotonic() - resumed, 1)

        handover_at = time.monotonic()
        third, statuses = _hand_over_to_a_fresh_worker(pipeline, first, second)
        phases["fresh_load"] = round(time.monotonic() - handover_at, 1)

        changelog = read_changelog(settings)
        stale = changelog.stale()
        fenced_by = {proc.name: fenced_in_log(proc.log) for proc in (first, second, third)}
        notes["claims"] = {p: len(changelog.claims(p)) for p in changelog.partitions}
        notes["zombie_records"] = len(stale)
        notes["zombie_records_by_partition"] = dict(Counter(entry.partition for entry in stale))
        notes["fenced_logged"] = fenced_by
        notes["exits"] = statuses
        phases["scenario"] = round(time.monotonic() - began, 1)
        counts = stop_sending_and_reconcile(sender, pipeline, traffic, third, notes)
    finally:
        if sender is not None:  # a failed test: the producer thread must not outlive it
            sender.stopping.set()
        pipeline.close()
    assert statuses == {first.name: 0, second.name: 0}, f"graceful stops after the zombie: {statuses}"
    assert_every_record_acknowledged_and_accounted(traffic, counts)
    _assert_only_the_zombie_was_fenced(freeze, stale, fenced_by[third.name])
