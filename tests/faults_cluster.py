"""The 3-broker cluster of the fault tests: a pytest plugin (`pytest_plugins = ["faults_cluster"]`).

`cluster` (session-scoped) starts `mic-pipeline kafka start --brokers 3` -- the project's own infra
code -- on free loopback ports in a directory of its own (`$MIC_FAULTS_DIR` when set, as
`scripts/test.sh` does, else a pytest temporary directory), and stops it with `mic-pipeline kafka
stop` at the end of the session. When a test failed, the brokers' logs are kept (their data is
removed) and their place is printed. `faults_settings` (per test) makes sure all three brokers run
and every partition is fully replicated before the test, then gives it its own topics (created with
the cluster's replication factor, 3), warehouse and state directories.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.infra.kafka_broker import StopOutcome
from mic_pipeline.infra.kafka_cluster import (
    ClusterPaths,
    ReplicationState,
    kill_node,
    leader_of,
    start_node,
    stop_node,
    wait_until_replicated,
)
from mic_pipeline.infra.kafka_config import ClusterConfig
from mic_pipeline.infra.kafka_dist import KafkaDistribution, fetch_kafka

START_TIMEOUT_S = 240.0
NODE_START_TIMEOUT_S = 180.0


def free_port_run(width: int) -> int:
    """A port P with P..P+width-1 all free now, below the kernel's ephemeral range.

    Not from it: a broker connecting to a quorum peer whose listener is not up yet can be given
    that very port as its local port and connect to itself (TCP simultaneous open). Its raft client
    then reads its own ApiVersions request as the answer ("Correlation id for response (1179652)",
    0x00120004 = API key 18, version 4) and the broker exits: a 3-broker start failed so in a
    rehearsal on 2026-12-01, with the ports 59220-59225.
    """
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, low - width)
        if all(_free(port) for port in range(base, base + width)):
            return base
    raise RuntimeError(f"no run of {width} free ports found below {low}")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Cluster:
    """The running cluster and the per-broker faults a test may inject."""

    paths: ClusterPaths
    config: ClusterConfig
    dist: KafkaDistribution
    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return self.config.bootstrap

    @property
    def nodes(self) -> list[int]:
        return list(self.config.node_ids)

    def running(self) -> list[int]:
        return [node for node, pid in self.paths.pids().items() if pid is not None]

    def kill(self, node: int) -> None:
        """kill -9 of one broker."""
        assert kill_node(self.paths, node), f"broker {node} was not running"

    def stop(self, node: int) -> StopOutcome:
        """A clean stop (controlled shutdown) of one broker: `STOPPED`, or `KILLED` when it did not
        stop within the timeout."""
        return stop_node(self.paths, node)

    def start(self, node: int) -> None:
        """Start one broker and wait until it is registered again."""
        start_node(self.dist, self.paths, node, timeout_s=NODE_START_TIMEOUT_S)

    def wait_replicated(self, timeout_s: float = 180.0) -> ReplicationState:
        """Every broker registered, every partition led and fully in sync."""
        return wait_until_replicated(self.bootstrap, self.nodes, timeout_s=timeout_s)

    def heal(self) -> None:
        """Start whatever broker is down (a failed test's outage) and wait for full replication."""
        for node in self.nodes:
            if node not in self.running():
                self.start(node)
        self.wait_replicated()

    def leader(self, topic: str, partition: int, timeout_s: float = 60.0) -> int:
        """The broker leading `topic[partition]` (retried: a dead broker makes admin calls fail)."""
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                leader = leader_of(self.bootstrap, topic, partition)
                if leader >= 0:
                    return leader
            except KafkaError:
                pass
            assert time.monotonic() < deadline, f"{topic}[{partition}] has no leader after {timeout_s} s"
            time.sleep(0.25)


def _cli(env: dict[str, str], *arguments: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    configured = os.environ.get("MIC_FAULTS_DIR")
    base = Path(configured) if configured else tmp_path_factory.mktemp("faults")
    state = base / f"cluster-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "MIC_STATE_DIR": str(state)}
    started = None
    for _attempt in range(3):  # another run may take a port between our probe and the start
        port = free_port_run(6)
        env["MIC_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"
        started = _cli(env, "kafka", "start", "--brokers", "3", "--timeout", str(START_TIMEOUT_S),
                       timeout=START_TIMEOUT_S + 120)
        if started.returncode == 0 or "already in use" not in started.stderr:
            break
        shutil.rmtree(state, ignore_errors=True)
    assert started is not None
    paths = ClusterPaths.in_state_dir(state)
    try:
        assert started.returncode == 0, f"the cluster did not start:\n{started.stdout}\n{started.stderr}"
        layout = paths.layout()
        assert layout is not None
        config = layout[0]
        dist = fetch_kafka(Settings.from_env(env).cache_dir)
        yield Cluster(paths, config, dist, {**env, "MIC_KAFKA_BOOTSTRAP": config.bootstrap})
    finally:
        stopped = _cli(env, "kafka", "stop", "--timeout", "60", timeout=180)
        failed = request.session.testsfailed > 0 or stopped.returncode != 0
        if failed or os.environ.get("MIC_TEST_KEEP_LOGS") == "1":
            for data in state.glob("kafka/node-*/data"):
                shutil.rmtree(data, ignore_errors=True)
            print(f"\nfaults: the cluster's logs are in {state}/kafka/node-*/ ({stopped.stdout.strip()})")
        else:
            shutil.rmtree(state, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture
def faults_settings(cluster: Cluster, tmp_path: Path) -> Settings:
    """An isolated pipeline on the healthy cluster: own topics (replication factor 3), warehouse
    and state directories, 3 partitions."""
    from mic_pipeline.infra.topics import create_topics

    cluster.heal()
    settings = Settings(
        kafka_bootstrap=cluster.bootstrap,
        warehouse_dir=tmp_path / "warehouse",
        topic_prefix=f"f{uuid.uuid4().hex[:8]}.",
        partitions=3,
        state_dir=tmp_path / "state",
    )
    create_topics(settings)
    return settings
