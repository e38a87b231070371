"""The local brokers' configuration: where they listen and their `server.properties` (pure functions).

One broker (`BrokerConfig`) is a combined broker+controller KRaft node voting alone. A cluster
(`ClusterConfig`, `mic-pipeline kafka start --brokers 3`) is N such nodes on loopback: node `i`
(from 1) listens on `port + 2(i-1)` for clients and on the next port for the controller quorum, every
node is a voter, and the replication settings make one broker's loss harmless: replication factor 3,
`min.insync.replicas=2` and no unclean leader election.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mic_pipeline.infra.topics import MAX_RECORD_BYTES

LOOPBACK_HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1"}


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker listens: `host:port` for clients, `host:port+1` for the controller; `secure`:
    SASL_SSL with SCRAM users and ACLs (`kafka_secure`) instead of PLAINTEXT."""

    host: str = "127.0.0.1"
    port: int = 9092
    node_id: int = 1
    secure: bool = False
    voters: str = ""
    """`controller.quorum.voters` of a cluster node (`ClusterConfig.node`); empty: this node alone."""
    replication: int = 1
    """The replication factor of the cluster this node belongs to (`ClusterConfig.replication`)."""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65534:
            raise ValueError(f"broker port must be in 1..65534 (the controller uses port+1), got {self.port}")
        if self.replication < 1:
            raise ValueError(f"replication factor must be >= 1, got {self.replication}")

    @property
    def controller_port(self) -> int:
        """The KRaft controller listener's port."""
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients use."""
        return f"{self.host}:{self.port}"

    @property
    def client_listener(self) -> str:
        """The name (and security protocol) of the clients' listener."""
        return "SASL_SSL" if self.secure else "PLAINTEXT"


@dataclass(frozen=True)
class ClusterConfig:
    """N combined KRaft nodes on `host`: node i (1..N) on `port + 2(i-1)` and the next port."""

    host: str = "127.0.0.1"
    port: int = 9092
    brokers: int = 3

    def __post_init__(self) -> None:
        if self.brokers not in CLUSTER_SIZES:
            sizes = " or ".join(str(size) for size in CLUSTER_SIZES)
            raise ValueError(f"a local cluster has {sizes} brokers, not {self.brokers}")
        last = self.port + 2 * self.brokers - 1
        if self.port < 1 or last > 65535:
            raise ValueError(f"ports {self.port}..{last} (clients and controllers) must be in 1..65535")

    @property
    def replication(self) -> int:
        """Replication factor of every topic (at most 3): each partition on every broker here."""
        return min(3, self.brokers)

    @property
    def min_insync_replicas(self) -> int:
        """Replicas that must have a record before it is acknowledged (`acks=all`)."""
        return min_insync_replicas(self.replication)

    @property
    def node_ids(self) -> range:
        return range(1, self.brokers + 1)

    def node(self, node_id: int) -> BrokerConfig:
        """The configuration of node `node_id` (1..brokers)."""
        if node_id not in self.node_ids:
            raise ValueError(f"node ids are 1..{self.brokers}, got {node_id}")
        port = self.port + 2 * (node_id - 1)
        return BrokerConfig(self.host, port, node_id, voters=self.voters, replication=self.replication)

    @property
    def voters(self) -> str:
        """`controller.quorum.voters`: every node votes (a quorum of 3 survives the loss of one)."""
        return ",".join(f"{i}@{self.host}:{self.port + 2 * (i - 1) + 1}" for i in self.node_ids)

    @property
    def bootstrap(self) -> str:
        """Every node's client address: what `MIC_KAFKA_BOOTSTRAP` should say."""
        return ",".join(self.node(i).bootstrap for i in self.node_ids)


CLUSTER_SIZES = (1, 3)
"""Local clusters: one broker (development) or three (replication; the fault tests)."""


def min_insync_replicas(replication: int) -> int:
    """`min.insync.replicas` for a replication factor: 2 of 3 (one broker may be lost), else 1."""
    return 2 if replication >= 3 else 1


def broker_config_from_bootstrap(bootstrap: str, port: int | None = None) -> BrokerConfig:
    """The local broker's listener from a bootstrap string (its first server), `port` overriding.

    Only loopback hosts are accepted: this broker is for one machine's development and tests.
    """
    first = bootstrap.split(",")[0].strip()
    host_text, separator, port_text = first.rpartition(":")
    if not separator or not host_text:
        raise ValueError(f"bootstrap server must look like host:port, got {first!r}")
    host = LOOPBACK_HOSTS.get(host_text)
    if host is None:
        raise ValueError(f"the local broker only listens on loopback, not on {host_text!r}")
    if port is None:
        try:
            port = int(port_text)
        except ValueError as exc:
            raise ValueError(f"bootstrap port must be an integer, got {port_text!r}") from exc
    return BrokerConfig(host=host, port=port)


def render_server_properties(
    config: BrokerConfig, data_dir: Path, security: Sequence[str] | None = None
) -> str:
    """A node's `server.properties`: a combined broker+controller with static voters (itself alone,
    or `config.voters`).

    Internal topics get the cluster's replication factor (`config.replication`, 1 alone) and few
    partitions (fast first use); with 3 replicas topics default to 3, an acknowledged write is on
    at least 2 (`min.insync.replicas`), and no out-of-sync replica is ever elected leader;
    consumer groups rebalance without the initial delay; topics are auto-created (faust creates
    its internal topics itself, but relies on the broker's defaults for some); records up to
    16 MiB are accepted so oversized poison pills can be published in tests. A secured broker's
    listener map, login and authorizer lines are `security` (`kafka_secure.security_properties`).
    """
    controller = f"{config.host}:{config.controller_port}"
    listener = config.client_listener
    if config.secure and security is None:
        raise ValueError("a secured broker's properties need its security lines")
    plain = [
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    ]
    replicas = config.replication
    min_insync = min_insync_replicas(replicas)
    replicated = [  # a single broker keeps Kafka's defaults (1, 1, false): its file is unchanged
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={min_insync}",
        "unclean.leader.election.enable=false",
    ]
    lines = [
        "process.roles=broker,controller",
        f"node.id={config.node_id}",
        f"controller.quorum.voters={config.voters or f'{config.node_id}@{controller}'}",
        f"listeners={listener}://{config.bootstrap},CONTROLLER://{controller}",
        f"advertised.listeners={listener}://{config.bootstrap}",
        "controller.listener.names=CONTROLLER",
        *(plain if security is None else security),
        f"log.dirs={data_dir}",
        "num.partitions=6",
        "auto.create.topics.enable=true",
        *(replicated if replicas > 1 else []),
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=10",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_insync}",
        "transaction.state.log.num.partitions=10",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_insync}",
        "group.initial.rebalance.delay.ms=0",
        f"message.max.bytes={MAX_RECORD_BYTES}",
        "log.cleaner.dedupe.buffer.size=33554432",
        "num.network.threads=2",
        "num.io.threads=4",
    ]
    return "\n".join(lines) + "\n"


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text
