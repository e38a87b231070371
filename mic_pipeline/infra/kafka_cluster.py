"""A local Kafka cluster of three brokers on loopback (`mic-pipeline kafka start --brokers 3`).

Three combined broker+controller KRaft nodes (`kafka_config.ClusterConfig`): every node votes, so the
controller quorum survives the loss of one; topics get 3 replicas, an acknowledged write is on at
least 2 (`min.insync.replicas`), and no out-of-sync replica is elected leader. With two nodes down
the quorum has no majority and nothing is acknowledged until one comes back.

State lives in `<state_dir>/kafka/`: `cluster.json` (host, first port, broker count and the cluster
id every node was formatted with) and one directory per node, `node-<id>/`, laid out as a single
broker's (`kafka_broker.BrokerPaths`: properties, data, logs, pid file). A state directory holds a
single broker or a cluster, never both.

`start_cluster` starts the nodes that are not running and returns once every node is registered
unfenced and a group coordinator answers. The per-node helpers (`start_node`, `stop_node`: SIGTERM,
a controlled shutdown; `kill_node`: SIGKILL) and the replication probes (`replication_state`,
`wait_until_replicated`, `leader_of`) are what a rolling restart, and the fault tests, are made of.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from mic_pipeline.config import Settings
from mic_pipeline.infra.kafka_broker import (
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_STOP_TIMEOUT_S,
    BrokerError,
    BrokerPaths,
    StopOutcome,
    launch_broker,
    running_pid,
    stop_broker,
    wait_for_brokers,
)
from mic_pipeline.infra.kafka_config import ClusterConfig, new_cluster_id, render_server_properties
from mic_pipeline.infra.kafka_dist import KafkaDistribution
from mic_pipeline.infra.kafka_probe import not_ready_reason
from mic_pipeline.infra.processes import ProcessError, kill, terminate_all

_POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ClusterPaths:
    """The files of a local cluster under `<state_dir>/kafka`."""

    root: Path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> ClusterPaths:
        return cls(state_dir.resolve() / "kafka")

    @property
    def layout_file(self) -> Path:
        return self.root / "cluster.json"

    def node(self, node_id: int) -> BrokerPaths:
        """Node `node_id`'s directory, laid out as a single broker's."""
        return BrokerPaths(self.root / f"node-{node_id}")

    def layout(self) -> tuple[ClusterConfig, str] | None:
        """The cluster this state directory holds and its cluster id, or None (no cluster here)."""
        try:
            document = json.loads(self.layout_file.read_text())
        except FileNotFoundError:
            return None
        config = ClusterConfig(document["host"], int(document["port"]), int(document["brokers"]))
        return config, str(document["cluster_id"])

    def pids(self) -> dict[int, int | None]:
        """Each node's pid while it runs (None: not running); empty when there is no cluster here."""
        layout = self.layout()
        if layout is None:
            return {}
        return {node_id: running_pid(self.node(node_id)) for node_id in layout[0].node_ids}


def start_cluster(
    dist: KafkaDistribution,
    paths: ClusterPaths,
    config: ClusterConfig,
    *,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    java: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[int, int]:
    """Start the nodes that are not running and wait until the cluster serves (see the module doc);
    node id -> pid. `BrokerError` (with the logs' tail) when a node cannot start or the cluster is
    not ready within `timeout_s`; the nodes started by this call are stopped again then."""
    cluster_id = _claim_layout(paths, config)
    started = {}
    try:
        for node_id in config.node_ids:
            node = paths.node(node_id)
            pid = running_pid(node)
            if pid is not None:
                _check_same_properties(node, config, node_id, pid)
                continue
            launched = launch_broker(
                dist, node, config.node(node_id), java=java, cluster_id=cluster_id, progress=progress
            )
            started[launched.pid] = (node, launched.since)
        wait_for_brokers(started, lambda: _cluster_not_ready(config, config.node_ids), timeout_s,
                         f"the {config.brokers}-broker cluster on {config.bootstrap}")
    except BrokerError:
        terminate_all(list(started), DEFAULT_STOP_TIMEOUT_S)
        for node, _ in started.values():
            node.pid_file.unlink(missing_ok=True)
        raise
    pids = paths.pids()
    return {node_id: pid for node_id, pid in pids.items() if pid is not None}


def stop_cluster(paths: ClusterPaths, *, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> dict[int, StopOutcome]:
    """Stop every running node: SIGTERM to all at once (a node waiting for a quorum that is shutting
    down would otherwise wait out its timeout), SIGKILL for those still running after `timeout_s`."""
    running = {node_id: pid for node_id, pid in paths.pids().items() if pid is not None}
    try:
        killed = terminate_all(list(running.values()), timeout_s)
    except ProcessError as exc:
        raise BrokerError(str(exc)) from exc
    outcomes = {node_id: StopOutcome.NOT_RUNNING for node_id in paths.pids()}
    for node_id, pid in running.items():
        paths.node(node_id).pid_file.unlink(missing_ok=True)
        outcomes[node_id] = StopOutcome.KILLED if pid in killed else StopOutcome.STOPPED
    return outcomes


def start_node(
    dist: KafkaDistribution,
    paths: ClusterPaths,
    node_id: int,
    *,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    java: str | None = None,
) -> int:
    """Start one (stopped) node of the cluster and wait until it is registered unfenced; its pid."""
    config, cluster_id = _layout(paths)
    node = paths.node(node_id)
    pid = running_pid(node)
    if pid is not None:
        return pid
    launched = launch_broker(dist, node, config.node(node_id), java=java, cluster_id=cluster_id)
    try:
        wait_for_brokers({launched.pid: (node, launched.since)},
                         lambda: _cluster_not_ready(config, [node_id], need_group_coordinator=False),
                         timeout_s, f"broker {node_id} of the cluster on {config.bootstrap}")
    except BrokerError:
        terminate_all([launched.pid], DEFAULT_STOP_TIMEOUT_S)
        node.pid_file.unlink(missing_ok=True)
        raise
    return launched.pid


def stop_node(paths: ClusterPaths, node_id: int, *, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> StopOutcome:
    """A clean stop of one node: SIGTERM (Kafka's controlled shutdown moves its leaderships away
    first), SIGKILL after `timeout_s`."""
    _layout(paths)
    return stop_broker(paths.node(node_id), timeout_s=timeout_s)


def kill_node(paths: ClusterPaths, node_id: int) -> bool:
    """kill -9 of one node (no controlled shutdown); False when it was not running."""
    _layout(paths)
    node = paths.node(node_id)
    pid = running_pid(node)
    if pid is None:
        return False
    try:
        kill(pid)
    except ProcessError as exc:
        raise BrokerError(str(exc)) from exc
    node.pid_file.unlink(missing_ok=True)
    return True


@dataclass(frozen=True)
class ReplicationState:
    """What the cluster says about its brokers and the replicas of every partition."""

    brokers: frozenset[int]
    """Brokers registered and unfenced."""
    under_replicated: tuple[str, ...]
    """`topic[partition]: in sync [..] of [..]` for each partition missing an in-sync replica."""
    offline: tuple[str, ...]
    """`topic[partition]` of each partition without a leader."""

    @property
    def healthy(self) -> bool:
        return not self.under_replicated and not self.offline


def replication_state(target: Settings | str, *, timeout_s: float = 5.0) -> ReplicationState:
    """The brokers and the replicas of every topic (internal ones included) of the cluster."""
    from mic_pipeline.infra.topics import admin_client

    with admin_client(target, timeout_s=timeout_s) as admin:
        brokers = frozenset(
            b["broker_id"] for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced", False)
        )
        topics = admin.describe_topics()
    under: list[str] = []
    offline: list[str] = []
    for topic in topics:
        for partition in topic["partitions"]:
            name = f"{topic['name']}[{partition['partition_index']}]"
            if partition["leader_id"] < 0:
                offline.append(name)
            if set(partition["isr_nodes"]) != set(partition["replica_nodes"]):
                under.append(f"{name}: in sync {sorted(partition['isr_nodes'])} of "
                             f"{sorted(partition['replica_nodes'])}")
    return ReplicationState(brokers, tuple(sorted(under)), tuple(sorted(offline)))


def wait_until_replicated(
    target: Settings | str, brokers: Collection[int], *, timeout_s: float = 120.0
) -> ReplicationState:
    """Wait until every one of `brokers` is registered and every partition has a leader and all its
    replicas in sync (what a rolling restart waits for before the next broker), in the view of every
    server of `target`'s bootstrap asked alone (one node's view may be stale: a survivor of a lost
    quorum still lists the dead as registered and in sync); `BrokerError` with what is still
    missing after `timeout_s`."""
    from kafka.errors import KafkaError

    bootstrap = target.kafka_bootstrap if isinstance(target, Settings) else target
    servers = [server.strip() for server in bootstrap.split(",") if server.strip()]
    views: dict[str, Settings | str] = {server: server for server in servers}
    if isinstance(target, Settings):
        views = {server: dataclasses.replace(target, kafka_bootstrap=server) for server in servers}
    deadline = time.monotonic() + timeout_s
    while True:
        problem: str | None = None
        state: ReplicationState | None = None
        for server, view in views.items():
            try:
                state = replication_state(view)
            except KafkaError as exc:
                problem = f"{server}: {exc.__class__.__name__}: {exc}"
                break
            missing = sorted(set(brokers) - state.brokers)
            if missing or not state.healthy:
                problem = f"brokers {missing} not registered" if missing else \
                    "; ".join([*state.offline[:5], *state.under_replicated[:5]])
                problem = f"{server}: {problem}"
                break
        if problem is None and state is not None:
            return state
        if time.monotonic() >= deadline:
            raise BrokerError(f"the cluster is not fully replicated after {timeout_s:.0f} s: {problem}")
        time.sleep(_POLL_INTERVAL_S)


def leader_of(target: Settings | str, topic: str, partition: int) -> int:
    """The node id leading `topic[partition]` now (-1: none)."""
    from mic_pipeline.infra.topics import admin_client

    with admin_client(target) as admin:
        [described] = admin.describe_topics([topic])
    for found in described["partitions"]:
        if found["partition_index"] == partition:
            return int(found["leader_id"])
    raise BrokerError(f"{topic} has no partition {partition}")


def _layout(paths: ClusterPaths) -> tuple[ClusterConfig, str]:
    layout = paths.layout()
    if layout is None:
        raise BrokerError(f"no cluster in {paths.root} (`mic-pipeline kafka start --brokers 3` makes one)")
    return layout


def _claim_layout(paths: ClusterPaths, config: ClusterConfig) -> str:
    """The cluster id of this state directory's cluster, recording the layout on first use."""
    if (paths.root / "data" / "meta.properties").is_file():
        raise BrokerError(f"{paths.root} holds a single broker: use another MIC_STATE_DIR for a cluster")
    layout = paths.layout()
    if layout is not None:
        if layout[0] != config:
            found = layout[0]
            raise BrokerError(
                f"{paths.root} holds a cluster of {found.brokers} brokers from port {found.port}, not "
                f"{config.brokers} from port {config.port}: stop it and use another MIC_STATE_DIR"
            )
        return layout[1]
    cluster_id = new_cluster_id()
    paths.root.mkdir(parents=True, exist_ok=True)
    document = {"host": config.host, "port": config.port, "brokers": config.brokers, "cluster_id": cluster_id}
    paths.layout_file.write_text(json.dumps(document, indent=2) + "\n")
    return cluster_id


def _check_same_properties(node: BrokerPaths, config: ClusterConfig, node_id: int, pid: int) -> None:
    if node.properties.read_text() != render_server_properties(config.node(node_id), node.data):
        raise BrokerError(
            f"broker {node_id} (pid {pid}) is already running with another configuration "
            f"({node.properties}); stop the cluster first"
        )


def _cluster_not_ready(
    config: ClusterConfig, node_ids: Collection[int], *, need_group_coordinator: bool = True
) -> str | None:
    """Why `node_ids` are not serving yet, asking each of them itself: another node's view may be
    stale (a survivor of a lost quorum still lists the dead as registered and unfenced)."""
    for node_id in node_ids:
        settings = Settings(kafka_bootstrap=config.node(node_id).bootstrap)
        reason = not_ready_reason(settings, timeout_s=2.0, need_group_coordinator=need_group_coordinator,
                                  brokers=node_ids)
        if reason is not None:
            return f"broker {node_id}: {reason}"
    return None
