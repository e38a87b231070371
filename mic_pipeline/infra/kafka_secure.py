"""The local broker secured (`mic-pipeline kafka start --secure`): TLS, SASL/SCRAM users and ACLs.

Files, in `<state_dir>/kafka/secrets/` (a directory of mode 0700; every file but the CA
certificate mode 0600), made on the first secured start and kept:

| file | what |
|---|---|
| `ca.pem` | the throw-away CA's certificate: what clients trust (`MIC_KAFKA_SSL_CAFILE`) |
| `ca-key.pem` | its private key |
| `broker.pem` | the broker's key and certificate (for `127.0.0.1`, `localhost` and the listener host) |
| `<user>.password` | the SCRAM password of each user (`MIC_KAFKA_SASL_PASSWORD_FILE`) |
| `<user>.env` | the `MIC_KAFKA_*` variables connecting as that user (`set -a; . <file>`): no password in it |

The broker listens with `SASL_SSL` (SCRAM-SHA-512 only) on the client port; its KRaft controller
listener (port + 1) is TLS with client certificates required, so only a holder of a certificate of
this CA (the broker itself) is served there. Users, created in the metadata when the storage is
formatted (`kafka-storage format --add-scram`, arguments passed in a 0600 argument file, never on
a command line other users can read): `admin` (super user), `pipeline`, `producer`, `analyst`, and
`broker` (the broker's own inter-broker login, super user). The `StandardAuthorizer` denies what
no ACL allows; `pipeline_acl_rules` lists the ACLs, `apply_acls` creates them (idempotent).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mic_pipeline.config import Settings
from mic_pipeline.infra.kafka_tls import KeyPair, issue, new_authority, subject_principal, write_private
from mic_pipeline.kafka_settings import KafkaSecurity, Secret
from schemas.topics import AGGREGATES_TOPIC, DEADLETTER_TOPIC, ENRICHED_TOPICS, INPUT_TOPICS

MECHANISM = "SCRAM-SHA-512"
BROKER_USER = "broker"
ADMIN_USER = "admin"
USERS = (ADMIN_USER, "pipeline", "producer", "analyst")
"""The client users, besides the broker's own login."""
SUPER_USERS = (ADMIN_USER, BROKER_USER)
BROKER_NAME = "mic-kafka-broker"
INTERNAL_PREFIX = "mic-"
"""Topics and consumer groups of the pipeline's components start with `<topic prefix>mic-` (the
stream's app id `mic-streams` and its internal topics, the sinks' groups `mic-sink-*`)."""


class SecurityStateError(RuntimeError):
    """The secured broker's files are missing, incomplete or do not fit the broker's data."""


@dataclass(frozen=True)
class BrokerSecrets:
    """The secured broker's files (see the module docstring)."""

    root: Path

    @classmethod
    def in_broker_dir(cls, broker_root: Path) -> BrokerSecrets:
        return cls(broker_root / "secrets")

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca-key.pem"

    @property
    def broker_keystore(self) -> Path:
        return self.root / "broker.pem"

    def password_file(self, user: str) -> Path:
        return self.root / f"{user}.password"

    def env_file(self, user: str) -> Path:
        return self.root / f"{user}.env"

    def exists(self) -> bool:
        """Whether this directory was provisioned (a secured broker's state)."""
        return self.broker_keystore.is_file()

    def password(self, user: str) -> Secret:
        try:
            return Secret(self.password_file(user).read_text(encoding="utf-8").strip())
        except FileNotFoundError:
            raise SecurityStateError(f"no password file for user {user!r} in {self.root}") from None

    def security(self, user: str) -> KafkaSecurity:
        """The client security settings that log in as `user` (SASL_SSL, SCRAM-SHA-512, this CA)."""
        return KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            sasl_username=user,
            sasl_password=self.password(user),
            sasl_password_file=self.password_file(user),
            ssl_cafile=self.ca_cert,
        )

    def settings(self, settings: Settings, user: str) -> Settings:
        """`settings` connecting as `user`."""
        import dataclasses

        return dataclasses.replace(settings, kafka_security=self.security(user))


def provision(paths: BrokerSecrets, hosts: Sequence[str]) -> None:
    """Make whatever is missing: the directory (0700), the CA, the broker's certificate for `hosts`
    (and loopback), a random password per user (0600). Existing files are kept (a formatted broker
    knows them)."""
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.root.chmod(0o700)
    if not paths.ca_cert.is_file() or not paths.ca_key.is_file():
        authority = new_authority(f"MIC local Kafka CA {secrets.token_hex(4)}")
        write_private(paths.ca_key, authority.key_pem)
        write_private(paths.ca_cert, authority.cert_pem)
        paths.ca_cert.chmod(0o644)
        paths.broker_keystore.unlink(missing_ok=True)
    if not paths.broker_keystore.is_file():
        authority = KeyPair(paths.ca_key.read_bytes(), paths.ca_cert.read_bytes())
        broker = issue(authority, BROKER_NAME, sorted({"127.0.0.1", "localhost", *hosts}))
        write_private(paths.broker_keystore, broker.key_pem + broker.cert_pem + authority.cert_pem)
    for user in (*USERS, BROKER_USER):
        if not paths.password_file(user).is_file():
            write_private(paths.password_file(user), (secrets.token_urlsafe(24) + "\n").encode())


def write_env_files(paths: BrokerSecrets, bootstrap: str) -> None:
    """One `<user>.env` per client user: the variables that connect as that user (0600)."""
    for user in USERS:
        variables = {"MIC_KAFKA_BOOTSTRAP": bootstrap, **paths.security(user).environment()}
        text = "".join(f"{name}={value}\n" for name, value in variables.items())
        write_private(paths.env_file(user), text.encode())


def broker_principal(paths: BrokerSecrets) -> str:
    """The principal of the broker's certificate (it talks to its own controller listener with it)."""
    pem = paths.broker_keystore.read_bytes()
    start = pem.index(b"-----BEGIN CERTIFICATE-----")
    return subject_principal(KeyPair(b"", pem[start:]))


def security_properties(
    paths: BrokerSecrets, client_listener: str, controller_listener: str, other_listeners: Sequence[str] = ()
) -> list[str]:
    """The `server.properties` lines of a secured broker (listener names upper case, as the map):
    `client_listener` (also the inter-broker one) and `other_listeners` are SASL_SSL."""
    password = paths.password(BROKER_USER)
    login = "org.apache.kafka.common.security.scram.ScramLoginModule required"
    jaas = f'{login} username="{BROKER_USER}" password="{password}";'
    supers = ";".join([*(f"User:{user}" for user in SUPER_USERS), broker_principal(paths)])
    client = client_listener.lower()
    sasl = [f"{name}:SASL_SSL" for name in (client_listener, *other_listeners)]
    scram = MECHANISM.lower()
    others = [f"listener.name.{name.lower()}.{scram}.sasl.jaas.config={login};" for name in other_listeners]
    return [
        f"listener.security.protocol.map={','.join(sasl)},{controller_listener}:SSL",
        f"inter.broker.listener.name={client_listener}",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        f"listener.name.{client}.sasl.enabled.mechanisms={MECHANISM}",
        f"listener.name.{client}.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
        *others,
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={paths.broker_keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={paths.ca_cert}",
        "ssl.endpoint.identification.algorithm=https",
        f"listener.name.{controller_listener.lower()}.ssl.client.auth=required",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users={supers}",
        # a failed login answers after this delay: password guessing gets slow
        "connection.failed.authentication.delay.ms=300",
    ]


def format_arguments(paths: BrokerSecrets) -> list[str]:
    """The `kafka-storage format` arguments creating every user's SCRAM credentials."""
    arguments: list[str] = []
    for user in (*USERS, BROKER_USER):
        arguments += ["--add-scram", f"{MECHANISM}=[name={user},password={paths.password(user)}]"]
    return arguments


# -- ACLs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AclRule:
    """Allow `principal` the `operations` on the topics or groups `name` (`prefixed`: every name that
    starts with it)."""

    principal: str
    resource: str  # "topic" | "group"
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False

    def describe(self) -> str:
        match = "prefix" if self.prefixed else "name"
        return f"{self.principal}: {','.join(self.operations)} on {self.resource} {match} {self.name}"


def pipeline_acl_rules(topic_prefix: str) -> list[AclRule]:
    """The ACLs of the pipeline's users for the topics under `topic_prefix` (the README's table).

    producer: write the four input topics. pipeline: read every pipeline topic (inputs, enriched,
    dead letters, aggregates, its internal ones), write the enriched, dead-letter and aggregates
    topics and its internal topics, create topics (the stream worker creates its internal ones,
    the existing ones answer "exists"), read their configuration, and own the `mic-*` consumer
    groups. analyst: read the enriched topics (with consumer groups named `analyst*`).
    """
    p = topic_prefix
    rules = [AclRule("User:producer", "topic", p + topic, ("WRITE",)) for topic in INPUT_TOPICS]
    rules.append(AclRule("User:pipeline", "topic", p + "mic", ("READ", "CREATE", "DESCRIBE_CONFIGS"), True))
    outputs = (*ENRICHED_TOPICS, DEADLETTER_TOPIC, AGGREGATES_TOPIC)
    rules += [AclRule("User:pipeline", "topic", p + topic, ("WRITE",)) for topic in outputs]
    rules.append(AclRule("User:pipeline", "topic", p + INTERNAL_PREFIX, ("WRITE",), True))
    rules.append(AclRule("User:pipeline", "group", p + INTERNAL_PREFIX, ("READ",), True))
    rules += [AclRule("User:analyst", "topic", p + topic, ("READ",)) for topic in ENRICHED_TOPICS]
    rules.append(AclRule("User:analyst", "group", p + "analyst", ("READ",), True))
    return rules


def _kafka_acls(rules: Iterable[AclRule]) -> list[Any]:
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType
    from kafka.admin._acls import ACLResourcePatternType

    acls = []
    for rule in rules:
        pattern = ResourcePattern(
            ResourceType.TOPIC if rule.resource == "topic" else ResourceType.GROUP,
            rule.name,
            ACLResourcePatternType.PREFIXED if rule.prefixed else ACLResourcePatternType.LITERAL,
        )
        acls += [
            ACL(rule.principal, "*", ACLOperation[operation], ACLPermissionType.ALLOW, pattern)
            for operation in rule.operations
        ]
    return acls


def apply_acls(admin_settings: Settings, rules: Sequence[AclRule], *, timeout_s: float = 30.0) -> int:
    """Create the ACLs of `rules` through the admin user's settings (creating an existing ACL is a
    no-op); returns how many ACL entries were sent. Raises `SecurityStateError` if any failed."""
    from mic_pipeline.infra.topics import admin_client

    acls = _kafka_acls(rules)
    with admin_client(admin_settings, timeout_s=timeout_s) as admin:
        result = admin.create_acls(acls)
    if result["failed"]:
        raise SecurityStateError(f"creating ACLs failed: {result['failed']}")
    return len(acls)


def rotate_password(paths: BrokerSecrets, admin_settings: Settings, user: str) -> None:
    """Give `user` a new random password: the broker first (as admin), then its file, replaced in
    one rename (a reader sees the old or the new password, never half a file). Clients already
    connected stay connected; a client that reconnects needs the new password (restart them)."""
    from kafka.admin import UserScramCredentialUpsertion

    from mic_pipeline.infra.topics import admin_client

    password = secrets.token_urlsafe(24)
    with admin_client(admin_settings) as admin:
        errors = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(user, MECHANISM, password)])
    if errors.get(user):
        raise SecurityStateError(f"the broker refused the new password of {user}: {errors[user]}")
    staged = paths.password_file(user).with_suffix(".new")
    write_private(staged, (password + "\n").encode())
    staged.replace(paths.password_file(user))
