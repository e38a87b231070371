"""Secrets and configuration of a secured broker in a container (docker-compose's `secured` profile).

`mic-pipeline kafka provision --dir /secrets --host kafka-secured` writes into a volume everything a
secured broker from the official `apache/kafka` image and the pipeline's containers need -- the same
CA, certificates, users and passwords as `kafka start --secure` (`kafka_secure.provision`), plus:

| file | for |
|---|---|
| `server.properties` | the broker: SASL_SSL on 9092 (containers) and 9095 (host), mTLS controller on 9093 |
| `admin.client.properties` | Kafka's own tools (the broker's health check) logging in as `admin` |
| `clients/<user>.password` | the pipeline's containers (`MIC_KAFKA_SASL_PASSWORD_FILE`) |

With `--broker-uid` / `--client-uid` (the provisioning container runs as root), the broker's files
belong to the broker image's user and the users' password files to the pipeline image's user, each
readable by its owner only; the CA certificate is readable by all.
"""

from __future__ import annotations

import os
from pathlib import Path

from mic_pipeline.infra.kafka_secure import (
    ADMIN_USER,
    BROKER_USER,
    MECHANISM,
    USERS,
    BrokerSecrets,
    provision,
    security_properties,
)
from mic_pipeline.infra.kafka_tls import write_private
from mic_pipeline.infra.topics import MAX_RECORD_BYTES

CLIENT_PORT, CONTROLLER_PORT, HOST_PORT = 9092, 9093, 9095
DATA_DIR = "/var/lib/kafka/data"


def container_properties(paths: BrokerSecrets, host: str) -> str:
    """`server.properties` of the secured single-node broker `host` (combined broker and controller)."""
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{CONTROLLER_PORT}",
        f"listeners=SASL_SSL://:{CLIENT_PORT},HOST://:{HOST_PORT},CONTROLLER://:{CONTROLLER_PORT}",
        f"advertised.listeners=SASL_SSL://{host}:{CLIENT_PORT},HOST://127.0.0.1:{HOST_PORT}",
        "controller.listener.names=CONTROLLER",
        *security_properties(paths, "SASL_SSL", "CONTROLLER", ["HOST"]),
        f"log.dirs={DATA_DIR}",
        "num.partitions=6",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        f"message.max.bytes={MAX_RECORD_BYTES}",
    ]
    return "\n".join(lines) + "\n"


def client_properties(paths: BrokerSecrets, user: str) -> str:
    """A Kafka (Java) client configuration logging in as `user` (for `kafka-*.sh --command-config`)."""
    login = "org.apache.kafka.common.security.scram.ScramLoginModule required"
    return "\n".join([
        "security.protocol=SASL_SSL",
        f"sasl.mechanism={MECHANISM}",
        f'sasl.jaas.config={login} username="{user}" password="{paths.password(user)}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={paths.ca_cert}",
    ]) + "\n"  # fmt: skip


def client_password_file(directory: Path, user: str) -> Path:
    """The copy of `user`'s password its clients read (the broker owns the original)."""
    return directory / "clients" / f"{user}.password"


def provision_container(
    directory: Path, host: str, *, broker_uid: int | None = None, client_uid: int | None = None
) -> list[Path]:
    """Write (or complete: existing secrets are kept) the files of the module docstring; returns them."""
    paths = BrokerSecrets(directory)
    provision(paths, [host])
    write_private(directory / "server.properties", container_properties(paths, host).encode())
    admin_config = client_properties(paths, ADMIN_USER)
    write_private(directory / f"{ADMIN_USER}.client.properties", admin_config.encode())
    broker_files = [directory / "server.properties", directory / f"{ADMIN_USER}.client.properties",
                    paths.broker_keystore, paths.ca_key, paths.password_file(BROKER_USER)]  # fmt: skip
    broker_files += [paths.password_file(user) for user in USERS]  # the broker formats its users with them
    (directory / "clients").mkdir(exist_ok=True)
    client_files = [client_password_file(directory, user) for user in USERS]
    for user, copy in zip(USERS, client_files, strict=True):
        write_private(copy, paths.password_file(user).read_bytes())
    if broker_uid is not None or client_uid is not None:
        for folder in (directory, directory / "clients"):
            folder.chmod(0o755)  # the files keep their own modes: 0600 for every secret
        for path in broker_files:
            os.chown(path, -1 if broker_uid is None else broker_uid, -1)
        for path in client_files:
            os.chown(path, -1 if client_uid is None else client_uid, -1)
    return sorted({*broker_files, *client_files, paths.ca_cert})
