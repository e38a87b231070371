"""Subcommand `streams`: run one faust worker of the stream processor.

Several workers = several `mic-pipeline streams` processes with the same `--app-id` (the consumer
group) and different `--web-port`s; faust spreads the partitions over them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from mic_pipeline.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands."""
    parser = subparsers.add_parser(
        "streams", help="run a stream worker: validate, de-duplicate, enrich, apply rules, aggregate"
    )
    parser.add_argument("--app-id", help="faust app id / consumer group (env MIC_STREAMS_APP_ID)")
    parser.add_argument(
        "--web-port", type=int, help="port of /aggregates, /health, /metrics (env MIC_STREAMS_WEB_PORT)"
    )
    parser.add_argument(
        "--member-wait",
        type=float,
        metavar="SECONDS",
        help="how long an event waits for its member (env MIC_STREAMS_MEMBER_WAIT_S, default 300)",
    )
    parser.add_argument("--dedupe-days", type=int, help="event-time retention of de-duplication (default 7)")
    parser.add_argument(
        "--guarantee",
        choices=("at_least_once",),
        help="processing guarantee (env MIC_STREAMS_GUARANTEE; at_least_once, replay-safe)",
    )
    parser.add_argument("--loglevel", default="warning", help="faust log level (default warning)")
    parser.set_defaults(handler=run_streams)


def ensure_internal_topics(settings: object) -> None:
    """Create the pipeline topics and the processor's internal topics when missing."""
    from mic_pipeline.infra.topics import TopicSpec, admin_client, ensure_topics, pipeline_topic_specs
    from streams.settings import StreamSettings

    assert isinstance(settings, StreamSettings)
    pipeline = settings.pipeline
    n = pipeline.partitions
    compacted = {"cleanup.policy": "compact"}
    specs = [
        *pipeline_topic_specs(pipeline),
        TopicSpec(settings.members_topic, n, compacted),
        TopicSpec(settings.changelog_topic, n, compacted),
        TopicSpec(settings.partials_topic, n, compacted),
        # faust would declare its leader-assignor topic itself, with the app's replication factor
        # (1, streams/app.py): made here it gets the cluster's, like every other topic
        TopicSpec(f"{settings.app_id}-__assignor-__leader", 1),
    ]
    with admin_client(pipeline) as admin:
        ensure_topics(admin, specs)


def run_streams(args: argparse.Namespace) -> int:
    """Run one worker until interrupted."""
    import faust

    from streams.app import build_app
    from streams.settings import StreamSettings

    settings = StreamSettings.from_env(Settings.from_env())
    overrides = {
        "app_id": args.app_id,
        "web_port": args.web_port,
        "member_wait_s": args.member_wait,
        "dedupe_days": args.dedupe_days,
        "guarantee": args.guarantee,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    from kafka.errors import KafkaError

    try:
        ensure_internal_topics(settings)
    except KafkaError as error:
        bootstrap = settings.pipeline.kafka_bootstrap
        from mic_pipeline.kafka_clients import explain_kafka_error

        why = explain_kafka_error(error, settings.pipeline)
        print(f"mic-pipeline streams: Kafka at {bootstrap}: {why}", file=sys.stderr)
        return 3
    from mic_pipeline.gcpolicy import tune_gc

    tune_gc()
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=args.loglevel, redirect_stdouts=False)
    # aiokafka logs every request at DEBUG; building those records cost ~10% of a worker's time
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLevelName(args.loglevel.upper())))
    worker.execute_from_commandline()
    return 0
