"""The 3-broker cluster itself, and the Armour issue's hostile inputs in a simulated stream on it.

Every test of this stage (`-m faults`) runs on the session's cluster (`faults_cluster`) and ends with
the reconciliation check (`faults_reconcile`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from faults_pipeline import Pipeline
from faults_reconcile import reconcile
from faults_traffic import Traffic

from mic_pipeline.config import Settings
from mic_pipeline.infra.topics import admin_client

if TYPE_CHECKING:
    from faults_cluster import Cluster

pytest_plugins = ["faults_cluster"]
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]


def _topic_layout(settings: Settings) -> dict[str, tuple[set[int], str, str]]:
    """Replication factors, `min.insync.replicas` and `unclean.leader.election.enable` of the topics."""
    from kafka.admin._configs import ConfigResource, ConfigResourceType

    with admin_client(settings) as admin:
        names = sorted(name for name in admin.list_topics() if name.startswith(settings.topic_prefix))
        described = admin.describe_topics(names)
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        configs = admin.describe_configs(resources, config_filter="all")["topic"]
    layout = {}
    for topic in described:
        config = configs[topic["name"]]
        replicas = {len(partition["replica_nodes"]) for partition in topic["partitions"]}
        layout[topic["name"]] = (
            replicas,
            str(config["min.insync.replicas"]["value"]),
            str(config["unclean.leader.election.enable"]["value"]),
        )
    return layout


def test_every_topic_of_the_pipeline_has_three_replicas_two_in_sync_and_no_unclean_election(
    cluster: Cluster, faults_settings: Settings, tmp_path: Path
) -> None:
    assert cluster.running() == [1, 2, 3]
    assert cluster.wait_replicated().brokers == frozenset({1, 2, 3})
    pipeline = Pipeline(faults_settings, tmp_path / "logs")
    try:
        pipeline.start_worker()  # creates the stream's internal topics
        layout = _topic_layout(faults_settings)
    finally:
        pipeline.close()
    internal = {f"{faults_settings.topic('mic-streams')}-{suffix}" for suffix in
                ("state-changelog", "members", "partials")}
    assert internal <= set(layout)
    assert len(layout) >= 10 + len(internal)
    leader_topic = f"{faults_settings.topic('mic-streams')}-__assignor-__leader"
    assert leader_topic in layout  # made by streams/cli.py with the others, not by faust with 1 replica
    wrong = {name: found for name, found in layout.items() if found != ({3}, "2", "false")}
    assert not wrong, f"topics not replicated 3 times with min.insync.replicas 2: {wrong}"


def test_hostile_inputs_in_a_simulated_stream_reconcile(faults_settings: Settings, tmp_path: Path) -> None:
    traffic = Traffic(faults_settings, seed=41)
    traffic.send(traffic.take(3000, hostile=40))
    pipeline = Pipeline(faults_settings, tmp_path / "logs")
    try:
        worker, _, _ = pipeline.start_all()
        counts = reconcile(faults_settings, traffic, [worker])
    finally:
        pipeline.close()
    assert counts.acknowledged == counts.produced == 3040
    assert counts.dead_letters >= 190 and counts.duplicates_dropped > 0
