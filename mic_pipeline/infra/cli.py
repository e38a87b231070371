"""Subcommands `kafka fetch|start|stop|status` (`acls|rotate-password|provision`: `secure_cli`) and
`topics create`.

`kafka` manages the local single-node broker of `MIC_STATE_DIR` (see `kafka_broker`), or with
`start --brokers 3` a cluster of three (`kafka_cluster`, `cluster_cli`); its port (the first node's)
comes from `--port` or from `MIC_KAFKA_BOOTSTRAP`, and its jars from `MIC_CACHE_DIR`.
`kafka start --secure` makes it a SASL_SSL broker with users and ACLs (`kafka_secure`); `acls`
grants the pipeline's users their rights on the topics of another prefix; `rotate-password`
gives a user a new password.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from mic_pipeline.config import Settings
from mic_pipeline.infra import cluster_cli, secure_cli
from mic_pipeline.infra.kafka_broker import DEFAULT_START_TIMEOUT_S, DEFAULT_STOP_TIMEOUT_S
from mic_pipeline.infra.kafka_secure import ADMIN_USER, USERS, SecurityStateError
from mic_pipeline.infra.topics import DEFAULT_RETENTION_MS, DEFAULT_TIMEOUT_S
from mic_pipeline.kafka_clients import explain_kafka_error as explain

_PORT_HELP = "the broker's client port (default: the port of MIC_KAFKA_BOOTSTRAP)"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the infrastructure subcommands."""
    _register_kafka(subparsers)
    _register_topics(subparsers)


def _register_kafka(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kafka = subparsers.add_parser(
        "kafka", help="run a local Kafka broker, or a 3-broker cluster (KRaft), on loopback"
    )
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    fetch = kafka_sub.add_parser(
        "fetch", help="download the broker's jars with Maven into MIC_CACHE_DIR (once; start does it too)"
    )
    fetch.set_defaults(handler=_kafka_fetch)
    start = kafka_sub.add_parser(
        "start", help="fetch the broker's jars if needed, start it detached, wait until it is ready"
    )
    start.add_argument("--port", type=int, default=None, help=_PORT_HELP)
    start.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT_S,
        help=f"seconds to wait for the broker to answer (default {DEFAULT_START_TIMEOUT_S:.0f})",
    )
    start.add_argument(
        "--secure",
        action="store_true",
        help="SASL_SSL (SCRAM-SHA-512) with a throw-away CA, users admin/pipeline/producer/analyst and "
        "ACLs for MIC_TOPIC_PREFIX; credentials in <state>/kafka/secrets (mode 0600)",
    )
    cluster_cli.add_brokers_option(start)
    start.set_defaults(handler=_kafka_start)
    secure_cli.register(kafka_sub)
    stop = kafka_sub.add_parser("stop", help="stop the broker (SIGTERM, then SIGKILL after --timeout)")
    stop.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT_S,
        help=f"seconds to wait for a clean exit (default {DEFAULT_STOP_TIMEOUT_S:.0f})",
    )
    stop.set_defaults(handler=_kafka_stop)
    status = kafka_sub.add_parser("status", help="is the broker running; its topics' partition end offsets")
    status.add_argument("--port", type=int, default=None, help=_PORT_HELP)
    status.add_argument("--prefix", default="", help="only topics whose name starts with this")
    status.add_argument("--all", action="store_true", help="include internal topics (__consumer_offsets...)")
    status.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    status.set_defaults(handler=_kafka_status)


def _register_topics(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = subparsers.add_parser("topics", help="manage the pipeline's Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_sub.add_parser(
        "create",
        help="create the pipeline's topics (idempotent; reports existing topics that differ)",
    )
    create.add_argument(
        "--partitions", type=int, default=None, help="partitions per topic (default: MIC_PARTITIONS or 6)"
    )
    create.add_argument(
        "--retention-ms",
        type=int,
        default=DEFAULT_RETENTION_MS,
        help=f"retention of the time-retained topics in ms (default {DEFAULT_RETENTION_MS}, 7 days)",
    )
    create.add_argument(
        "--replication-factor",
        type=int,
        default=None,
        help="replicas per partition (default: the cluster's default.replication.factor: 1 on a single "
        "broker, 3 on `kafka start --brokers 3`)",
    )
    create.add_argument(
        "--update-config",
        action="store_true",
        help="set the wanted configuration (retention, ...) on existing topics that differ",
    )
    create.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the broker"
    )
    create.set_defaults(handler=_topics_create)


def _topics_create(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from mic_pipeline.infra.topics import (
        TopicState,
        TopicUpdateError,
        admin_client,
        ensure_topics,
        pipeline_topic_specs,
    )

    settings = Settings.from_env()
    if args.partitions is not None:
        settings = dataclasses.replace(settings, partitions=args.partitions)
    specs = pipeline_topic_specs(settings, retention_ms=args.retention_ms)
    try:
        with admin_client(settings, timeout_s=args.timeout) as admin:
            outcomes = ensure_topics(
                admin,
                specs,
                replication_factor=args.replication_factor,
                update_config=args.update_config,
                timeout_s=args.timeout,
            )
    except (KafkaError, TopicUpdateError) as exc:
        reason = explain(exc, settings)
        print(f"topics create failed on {settings.kafka_bootstrap}: {reason}", file=sys.stderr)
        return 2
    width = max(len(spec.name) for spec in specs)
    for outcome in outcomes:
        policy = outcome.spec.config.get("cleanup.policy", "")
        line = f"{outcome.spec.name:<{width}}  {outcome.spec.partitions:>3} partitions  {policy:<7}  "
        line += outcome.state.value
        if outcome.problems:
            line += ": " + "; ".join(outcome.problems)
        print(line)
    mismatched = sum(outcome.state is TopicState.MISMATCH for outcome in outcomes)
    if mismatched:
        print(f"{mismatched} existing topic(s) differ from the wanted layout", file=sys.stderr)
        return 1
    return 0


def _kafka_fetch(args: argparse.Namespace) -> int:
    from mic_pipeline.infra.kafka_dist import KafkaFetchError, fetch_kafka

    began = time.monotonic()
    try:
        dist = fetch_kafka(Settings.from_env().cache_dir, progress=_note)
    except KafkaFetchError as exc:
        print(f"kafka fetch failed: {exc}", file=sys.stderr)
        return 1
    print(f"kafka jars in {dist.libs} ({time.monotonic() - began:.1f} s)")
    return 0


def _kafka_start(args: argparse.Namespace) -> int:
    from mic_pipeline.infra.kafka_broker import BrokerError, BrokerPaths, running_pid, start_broker
    from mic_pipeline.infra.kafka_config import broker_config_from_bootstrap
    from mic_pipeline.infra.kafka_dist import KafkaFetchError, fetch_kafka

    settings = Settings.from_env()
    if cluster_cli.wants_cluster(args, settings):
        return cluster_cli.start(args, settings)
    try:
        config = broker_config_from_bootstrap(settings.kafka_bootstrap, args.port)
    except ValueError as exc:
        print(f"kafka start: {exc}", file=sys.stderr)
        return 2
    config = dataclasses.replace(config, secure=args.secure)
    paths = BrokerPaths.in_state_dir(settings.state_dir)
    already = running_pid(paths)
    began = time.monotonic()
    try:
        dist = fetch_kafka(settings.cache_dir, progress=_note)
        pid = start_broker(dist, paths, config, timeout_s=args.timeout, progress=_note)
        if config.secure:
            admin = paths.secrets.settings(Settings(kafka_bootstrap=config.bootstrap), ADMIN_USER)
            secure_cli.grant(admin, settings.topic_prefix)
    except (KafkaFetchError, BrokerError) as exc:
        print(f"kafka start failed: {exc}", file=sys.stderr)
        return 1
    except SecurityStateError as exc:
        print(f"kafka start: the broker runs, but {exc}", file=sys.stderr)
        return 1
    verb = "already running" if already == pid else f"started in {time.monotonic() - began:.1f} s"
    kind = " (SASL_SSL, SCRAM-SHA-512, ACLs)" if config.secure else ""
    print(f"kafka {verb}{kind}: pid {pid}, bootstrap {config.bootstrap}, logs {paths.server_log}")
    if config.secure:
        env_file = paths.secrets.env_file("<user>")
        print(f"clients: `set -a; . {env_file}; set +a`, <user> one of {', '.join(USERS)}")
    return 0


def _kafka_stop(args: argparse.Namespace) -> int:
    from mic_pipeline.infra.kafka_broker import BrokerError, BrokerPaths, StopOutcome, stop_broker

    settings = Settings.from_env()
    if cluster_cli.has_cluster(settings):
        return cluster_cli.stop(args, settings)
    paths = BrokerPaths.in_state_dir(settings.state_dir)
    began = time.monotonic()
    try:
        outcome = stop_broker(paths, timeout_s=args.timeout)
    except BrokerError as exc:
        print(f"kafka stop failed: {exc}", file=sys.stderr)
        return 1
    if outcome is StopOutcome.NOT_RUNNING:
        print(f"kafka was not running (state dir {paths.root})")
    else:
        print(f"kafka {outcome.value} in {time.monotonic() - began:.1f} s")
    return 0


def _kafka_status(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from mic_pipeline.infra.kafka_broker import BrokerPaths, answers_metadata, running_pid
    from mic_pipeline.infra.kafka_status import collect_topic_offsets, format_offsets_table

    settings = Settings.from_env()
    if args.port is not None:
        settings = dataclasses.replace(settings, kafka_bootstrap=f"127.0.0.1:{args.port}")
    if cluster_cli.has_cluster(settings):
        return cluster_cli.status(args, settings)
    bootstrap = settings.kafka_bootstrap
    paths = BrokerPaths.in_state_dir(settings.state_dir)
    pid = running_pid(paths)
    reachable = answers_metadata(settings)
    topics = []
    error = None
    if reachable:
        try:
            topics = collect_topic_offsets(settings, prefix=args.prefix, include_internal=args.all)
        except KafkaError as exc:
            error = explain(exc, settings)
    if args.json:
        report = {
            "running": pid is not None,
            "pid": pid,
            "state_dir": str(paths.root),
            "bootstrap": bootstrap,
            "reachable": reachable,
            "error": error,
            "topics": [topic.to_json() for topic in topics],
        }
        print(json.dumps(report, indent=2))
    else:
        managed = f"running (pid {pid})" if pid is not None else "not running"
        print(f"local broker of {paths.root}: {managed}")
        print(f"bootstrap {bootstrap}: {'reachable' if reachable else 'NOT reachable'}")
        if error is not None:
            print(f"listing topics failed: {error}")
        elif reachable:
            print(format_offsets_table(topics))
    return 0 if reachable and error is None else 1


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
