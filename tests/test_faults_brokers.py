"""Brokers failing under the running pipeline: kill -9 of the broker leading most of the stream's
input partitions, and a rolling restart of all three (a clean stop or a kill -9, then a start, one
at a time).

The pipeline (a stream worker and both sinks) runs throughout and is never restarted; the producer
sends at a steady rate across the fault. Each test ends with the reconciliation (`faults_reconcile`):
every acknowledged record exactly once in the warehouse (SQL = Parquet) or among the dead letters.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from faults_pipeline import Pipeline
from faults_reconcile import reconcile
from faults_traffic import NOT_HANDED, Traffic
from streams_kafka import wait_until

from mic_pipeline.config import Settings
from mic_pipeline.infra.kafka_broker import StopOutcome
from schemas.topics import Family

if TYPE_CHECKING:
    from faults_cluster import Cluster

pytest_plugins = ["faults_cluster"]
pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]


def _input_leaders(cluster: Cluster, settings: Settings) -> Counter[int]:
    """How many of the stream's input partitions each broker leads."""
    return Counter(
        cluster.leader(settings.topic(family.topic), partition)
        for family in Family
        for partition in range(settings.partitions)
    )


def _wait_for_acknowledgements(traffic: Traffic, more: int, when: str) -> None:
    """Until `more` records more than now are acknowledged (the producer runs in the background)."""
    target = len(traffic.acknowledged()) + more
    wait_until(lambda: len(traffic.acknowledged()) >= target, 120, f"{more} records acknowledged {when}")


def test_kill_9_of_the_leader_of_the_input_partitions_loses_and_duplicates_nothing(
    cluster: Cluster, faults_settings: Settings, tmp_path: Path
) -> None:
    traffic = Traffic(faults_settings, seed=43)
    batch = traffic.take(4000, hostile=20)
    pipeline = Pipeline(faults_settings, tmp_path / "logs")
    try:
        worker, _, _ = pipeline.start_all()
        sender = traffic.send_in_background(batch, rate=200)
        wait_until(lambda: len(traffic.acknowledged()) >= len(batch) // 3, 120, "a third acknowledged")
        leaders = _input_leaders(cluster, faults_settings)
        victim, led = leaders.most_common(1)[0]
        cluster.kill(victim)
        wait_until(lambda: victim not in _input_leaders(cluster, faults_settings), 60,
                   f"broker {victim} still leads input partitions after its kill -9")
        sender.finish()
        pipeline.check_alive()
        assert victim not in cluster.running()
        counts = reconcile(faults_settings, traffic, [worker],
                           notes={"killed": victim, "input_partitions_it_led": led})
    finally:
        pipeline.close()
    # acks=all with min.insync.replicas=2: the producer's retries reach the new leaders in time
    assert counts.acknowledged == counts.produced == len(batch)
    assert counts.failed == 0
    assert counts.landed > 0 and counts.dead_letters > 0


@pytest.mark.parametrize("how", ["clean", "hard"])
def test_a_rolling_restart_of_the_three_brokers_under_traffic_reconciles(
    how: str, cluster: Cluster, faults_settings: Settings, tmp_path: Path
) -> None:
    """Each broker in turn stopped -- `clean`: a controlled shutdown that must not need SIGKILL;
    `hard`: kill -9 -- then started, every partition back in sync before the next one."""
    traffic = Traffic(faults_settings, seed=47 if how == "clean" else 61)
    batch = traffic.take(40_000)  # more than the roll needs: the sender is stopped after it
    pipeline = Pipeline(faults_settings, tmp_path / "logs")
    try:
        worker, _, _ = pipeline.start_all()
        sender = traffic.send_in_background(batch, rate=100)
        rolled = []
        for node in cluster.nodes:
            _wait_for_acknowledgements(traffic, 300, f"before broker {node}'s stop")
            if how == "clean":
                assert cluster.stop(node) is StopOutcome.STOPPED, f"broker {node} did not stop cleanly"
            else:
                cluster.kill(node)
            cluster.start(node)
            cluster.wait_replicated()
            pipeline.check_alive()
            rolled.append(node)
        _wait_for_acknowledgements(traffic, 300, "after the roll")
        sender.stopping.set()
        sender.finish()
        assert rolled == [1, 2, 3] and cluster.running() == [1, 2, 3]
        counts = reconcile(faults_settings, traffic, [worker], notes={"rolled": rolled, "how": how})
    finally:
        pipeline.close()
    assert all(sent.error == NOT_HANDED for sent in traffic.records if not sent.handed)
    # two of three in sync all along: the producer's retries reach the new leader, nothing fails
    assert counts.failed == 0, f"a {how} stop of one broker of three must not fail a record"
    assert counts.acknowledged == counts.produced >= 1200
