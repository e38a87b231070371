"""`kafka start --brokers 3` and the cluster's `kafka stop` and `kafka status` (`kafka_cluster`).

The cluster's first node listens on `--port` (default: the port of the first server of
`MIC_KAFKA_BOOTSTRAP`), the others two and four ports above it (controllers one above each). A
state directory that holds a cluster is started, stopped and shown as one: `kafka start` without
`--brokers` restarts it as it was laid out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mic_pipeline.config import Settings
from mic_pipeline.infra.kafka_config import CLUSTER_SIZES


def add_brokers_option(start: argparse.ArgumentParser) -> None:
    start.add_argument(
        "--brokers",
        type=int,
        choices=CLUSTER_SIZES,
        default=None,
        help="1: a single broker (default); 3: a KRaft cluster of three on ports P, P+2, P+4 "
        "(replication factor 3, min.insync.replicas=2, no unclean leader election); "
        "default: what this state directory holds",
    )


def has_cluster(settings: Settings) -> bool:
    """Whether `MIC_STATE_DIR` holds a cluster (`kafka_cluster.ClusterPaths.layout`)."""
    from mic_pipeline.infra.kafka_cluster import ClusterPaths

    return ClusterPaths.in_state_dir(settings.state_dir).layout_file.is_file()


def wants_cluster(args: argparse.Namespace, settings: Settings) -> bool:
    """`kafka start` is about a cluster: asked for one, or the state directory holds one."""
    return bool((args.brokers or 1) > 1 or has_cluster(settings))


def start(args: argparse.Namespace, settings: Settings) -> int:
    from mic_pipeline.infra.kafka_broker import BrokerError
    from mic_pipeline.infra.kafka_cluster import ClusterPaths, start_cluster
    from mic_pipeline.infra.kafka_config import ClusterConfig, broker_config_from_bootstrap
    from mic_pipeline.infra.kafka_dist import KafkaFetchError, fetch_kafka

    paths = ClusterPaths.in_state_dir(settings.state_dir)
    layout = paths.layout()
    if args.secure:
        print("kafka start: --secure is available for a single broker only", file=sys.stderr)
        return 2
    if layout is not None and args.brokers == 1:
        print(f"kafka start: {paths.root} holds a cluster of {layout[0].brokers} brokers: start it without "
              "--brokers, or use another MIC_STATE_DIR for a single broker", file=sys.stderr)
        return 1
    try:
        first = broker_config_from_bootstrap(settings.kafka_bootstrap, args.port)
        if layout is not None and args.port is None:
            config = layout[0]
        else:
            config = ClusterConfig(first.host, first.port, args.brokers or 3)
    except ValueError as exc:
        print(f"kafka start: {exc}", file=sys.stderr)
        return 2
    already = {node for node, pid in paths.pids().items() if pid is not None}
    began = time.monotonic()
    try:
        dist = fetch_kafka(settings.cache_dir, progress=_note)
        pids = start_cluster(dist, paths, config, timeout_s=args.timeout, progress=_note)
    except (KafkaFetchError, BrokerError) as exc:
        print(f"kafka start failed: {exc}", file=sys.stderr)
        return 1
    verb = "already running" if already == set(pids) else f"started in {time.monotonic() - began:.1f} s"
    nodes = ", ".join(f"{node} (pid {pid})" for node, pid in sorted(pids.items()))
    print(f"kafka cluster {verb}: {config.brokers} brokers {nodes}; replication factor "
          f"{config.replication}, min.insync.replicas {config.min_insync_replicas}")
    print(f"bootstrap {config.bootstrap} (export MIC_KAFKA_BOOTSTRAP={config.bootstrap}); "
          f"logs {paths.root}/node-*/logs")
    return 0


def stop(args: argparse.Namespace, settings: Settings) -> int:
    from mic_pipeline.infra.kafka_broker import BrokerError, StopOutcome
    from mic_pipeline.infra.kafka_cluster import ClusterPaths, stop_cluster

    paths = ClusterPaths.in_state_dir(settings.state_dir)
    began = time.monotonic()
    try:
        outcomes = stop_cluster(paths, timeout_s=args.timeout)
    except BrokerError as exc:
        print(f"kafka stop failed: {exc}", file=sys.stderr)
        return 1
    if all(outcome is StopOutcome.NOT_RUNNING for outcome in outcomes.values()):
        print(f"kafka cluster was not running (state dir {paths.root})")
        return 0
    shown = ", ".join(f"broker {node} {outcome.value}" for node, outcome in sorted(outcomes.items()))
    print(f"kafka cluster stopped in {time.monotonic() - began:.1f} s: {shown}")
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    """Each node, running or not; then the topics as for a single broker."""
    from kafka.errors import KafkaError

    from mic_pipeline.infra.kafka_cluster import ClusterPaths, replication_state
    from mic_pipeline.infra.kafka_probe import answers_metadata
    from mic_pipeline.infra.kafka_status import TopicOffsets, collect_topic_offsets, format_offsets_table
    from mic_pipeline.kafka_clients import explain_kafka_error

    paths = ClusterPaths.in_state_dir(settings.state_dir)
    layout = paths.layout()
    assert layout is not None
    config = layout[0]
    target = Settings(kafka_bootstrap=config.bootstrap)
    pids = paths.pids()
    reachable = answers_metadata(target)
    topics: list[TopicOffsets] = []
    error: str | None = None
    under: tuple[str, ...] = ()
    if reachable:
        try:
            topics = collect_topic_offsets(target, prefix=args.prefix, include_internal=args.all)
            under = replication_state(target).under_replicated
        except KafkaError as exc:
            error = explain_kafka_error(exc, target)
    nodes = [
        {"node_id": node, "pid": pid, "running": pid is not None, "bootstrap": config.node(node).bootstrap}
        for node, pid in sorted(pids.items())
    ]
    if args.json:
        report = {
            "running": all(node["running"] for node in nodes),
            "state_dir": str(paths.root),
            "bootstrap": config.bootstrap,
            "reachable": reachable,
            "nodes": nodes,
            "under_replicated": list(under),
            "error": error,
            "topics": [topic.to_json() for topic in topics],
        }
        print(json.dumps(report, indent=2))
    else:
        print(f"local cluster of {paths.root}: {config.brokers} brokers")
        for node in nodes:
            state = f"running (pid {node['pid']})" if node["running"] else "NOT running"
            print(f"  broker {node['node_id']} on {node['bootstrap']}: {state}")
        print(f"bootstrap {config.bootstrap}: {'reachable' if reachable else 'NOT reachable'}")
        if under:
            print(f"{len(under)} partitions under-replicated, e.g. {under[0]}")
        if error is not None:
            print(f"listing topics failed: {error}")
        elif reachable:
            print(format_offsets_table(topics))
    return 0 if reachable and error is None and all(node["running"] for node in nodes) else 1


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
