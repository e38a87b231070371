"""Subcommands `kafka acls`, `kafka rotate-password` and `kafka provision` (secured Kafka).

- `acls [--prefix P]`: create the ACLs of the pipeline's users (`kafka_secure.pipeline_acl_rules`) on
  the topics of a prefix (default `MIC_TOPIC_PREFIX`): on the cluster of the process's own settings
  when they log in with SASL (run it as a user allowed to create ACLs, e.g. `admin`), else on this
  state directory's local secured broker, as its `admin`.
- `rotate-password USER`: a new random password for a user of the local secured broker.
- `provision --dir D --host H`: the files of a secured broker in a container
  (`kafka_provision`; docker-compose's `secured` profile).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from mic_pipeline.config import Settings
from mic_pipeline.infra.kafka_secure import ADMIN_USER, USERS, SecurityStateError
from mic_pipeline.kafka_clients import explain_kafka_error

_PORT_HELP = "the local broker's client port (default: the port of MIC_KAFKA_BOOTSTRAP)"


def register(kafka_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `acls`, `rotate-password` and `provision` to the `kafka` subcommands."""
    acls = kafka_sub.add_parser(
        "acls", help="grant the pipeline's users their ACLs on the topics of a prefix (secured Kafka)"
    )
    acls.add_argument("--prefix", default=None, help="topic prefix (default: MIC_TOPIC_PREFIX)")
    acls.add_argument("--port", type=int, default=None, help=_PORT_HELP)
    acls.set_defaults(handler=_kafka_acls)
    rotate = kafka_sub.add_parser(
        "rotate-password", help="give a user of the local secured broker a new random password (file 0600)"
    )
    rotate.add_argument("user", help="admin, pipeline, producer or analyst")
    rotate.add_argument("--port", type=int, default=None, help=_PORT_HELP)
    rotate.set_defaults(handler=_kafka_rotate_password)
    provision = kafka_sub.add_parser(
        "provision", help="write a containerised secured broker's CA, certificate, users and configuration"
    )
    provision.add_argument("--dir", type=Path, required=True, help="where (a volume shared with the broker)")
    provision.add_argument("--host", required=True, help="the broker's host name in the container network")
    provision.add_argument("--broker-uid", type=int, default=None, help="owner of the broker's files")
    provision.add_argument("--client-uid", type=int, default=None, help="owner of the clients' passwords")
    provision.set_defaults(handler=_kafka_provision)


def grant(admin: Settings, prefix: str) -> None:
    """The users' ACLs on the topics of `prefix`, created with `admin`'s settings."""
    from kafka.errors import KafkaError

    from mic_pipeline.infra.kafka_secure import apply_acls, pipeline_acl_rules

    try:
        count = apply_acls(admin, pipeline_acl_rules(prefix))
    except KafkaError as exc:
        raise SecurityStateError(f"creating the ACLs failed: {explain_kafka_error(exc, admin)}") from exc
    print(f"ACLs for the topics under {prefix or '(no prefix)'}: {count} entries", file=sys.stderr)


def _local_admin(args: argparse.Namespace, command: str) -> tuple[Settings, Path] | None:
    """This state directory's secured broker, as its admin, and its secrets directory (None after a
    message when there is none)."""
    from mic_pipeline.infra.kafka_broker import BrokerPaths
    from mic_pipeline.infra.kafka_config import broker_config_from_bootstrap

    settings = Settings.from_env()
    paths = BrokerPaths.in_state_dir(settings.state_dir)
    if not paths.secrets.exists():
        print(f"kafka {command}: no secured broker in {paths.root} (kafka start --secure)", file=sys.stderr)
        return None
    try:
        bootstrap = broker_config_from_bootstrap(settings.kafka_bootstrap, args.port).bootstrap
    except ValueError as exc:
        print(f"kafka {command}: {exc}", file=sys.stderr)
        return None
    admin = paths.secrets.settings(dataclasses.replace(settings, kafka_bootstrap=bootstrap), ADMIN_USER)
    return admin, paths.secrets.root


def _kafka_acls(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    prefix = settings.topic_prefix if args.prefix is None else args.prefix
    if settings.kafka_security.uses_sasl:
        admin = settings
    else:
        found = _local_admin(args, "acls")
        if found is None:
            return 2
        admin = found[0]
    try:
        grant(admin, prefix)
    except SecurityStateError as exc:
        print(f"kafka acls: {exc}", file=sys.stderr)
        return 1
    return 0


def _kafka_rotate_password(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from mic_pipeline.infra.kafka_secure import BrokerSecrets, rotate_password

    if args.user not in USERS:
        known = ", ".join(USERS)
        print(f"kafka rotate-password: unknown user {args.user!r} (one of {known})", file=sys.stderr)
        return 2
    found = _local_admin(args, "rotate-password")
    if found is None:
        return 2
    admin, root = found
    secrets = BrokerSecrets(root)
    try:
        rotate_password(secrets, admin, args.user)
    except (KafkaError, SecurityStateError) as exc:
        print(f"kafka rotate-password: {explain_kafka_error(exc, admin)}", file=sys.stderr)
        return 1
    print(f"new password of {args.user} in {secrets.password_file(args.user)}; restart its clients")
    return 0


def _kafka_provision(args: argparse.Namespace) -> int:
    from mic_pipeline.infra.kafka_provision import provision_container

    try:
        owners = {"broker_uid": args.broker_uid, "client_uid": args.client_uid}
        written = provision_container(args.dir, args.host, **owners)
    except OSError as exc:
        print(f"kafka provision: {exc}", file=sys.stderr)
        return 1
    print(f"secured broker files for {args.host} in {args.dir}: {len(written)} files")
    return 0
