"""The local broker's configuration: where it listens and its `server.properties` (pure functions)."""

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

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65534:
            raise ValueError(f"broker port must be in 1..65534 (the controller uses port+1), got {self.port}")

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
    """The broker's `server.properties`: one combined broker+controller node with static voters.

    Internal topics get replication factor 1 and few partitions (one node, fast first use);
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
    lines = [
        "process.roles=broker,controller",
        f"node.id={config.node_id}",
        f"controller.quorum.voters={config.node_id}@{controller}",
        f"listeners={listener}://{config.bootstrap},CONTROLLER://{controller}",
        f"advertised.listeners={listener}://{config.bootstrap}",
        "controller.listener.names=CONTROLLER",
        *(plain if security is None else security),
        f"log.dirs={data_dir}",
        "num.partitions=6",
        "auto.create.topics.enable=true",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=10",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
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
