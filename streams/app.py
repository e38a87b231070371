"""The faust application of the stream worker: assembly of `streams.worker.StreamWorker`.

Topology (all topics have the same partition count, so faust assigns partition `p` of every input
topic to the same worker):

    mic.membership|orders|patents|factoring --(fetched batches)--> StreamWorker.on_batch
        decide (streams.processor) --> mic.<family>.enriched, mic.deadletter, <app>-members
        state of partition p (streams.store) --checkpoint--> <app>-state-changelog, partition p
    <app>-members  (compacted): member states, replicated to every worker (`streams.replica`)
    <app>-partials (compacted): each partition's aggregates, replicated to every worker
    mic.aggregates (compacted): the merged aggregates document, one record per section

faust runs the worker's life cycle, the consumer group, rebalances, timers and the web server;
records reach the worker in batches (`streams.faust_compat`), which commits its own checkpoints
(`streams.checkpoint`). Processing guarantee: `streams/README.md`.

HTTP on the web port: `/aggregates` (JSON), `/health` and `/health/ready` (200 when ready, else 503
with the reasons), `/metrics` (Prometheus), `/trace?event_id=ID` (the worker's decision for an
event: its marker and dropped copies, or the parked record; `StreamWorker.trace`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from mic_pipeline.kafka_clients import aiokafka_options, faust_app_options
from schemas.topics import AGGREGATES_TOPIC
from streams import faust_compat
from streams.replica import follow_topics, member_handler, partials_handler
from streams.settings import StreamSettings
from streams.snapshots import Snapshots
from streams.worker import StreamWorker

log = logging.getLogger(__name__)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SESSION_TIMEOUT_S = 10.0
"""Consumer-group session timeout: how long a killed worker's partitions stay unassigned."""
REPLICA_WAIT_S = 30.0
"""Longest time the worker waits at start-up for the member replica to catch up."""
MAX_POLL_RECORDS = 5000
"""Records one fetch returns at most (all partitions together)."""
MAX_FETCH_BYTES_PER_PARTITION = 256 * 1024
"""aiokafka hands over fetched records one partition's response at a time; smaller responses keep
the four input topics of a partition closer together for the merge (`streams.merge`). A larger
record is still fetched (the broker always returns at least one)."""


def build_app(settings: StreamSettings) -> Any:
    """The configured faust app with its worker, timers and web views."""
    faust_compat.check_versions()
    app = _new_app(settings)
    worker = StreamWorker(settings, app)
    app.batch_handler = worker
    app.processed_topics = frozenset(worker.logical)
    app.topics.add(app.topic(*worker.logical, key_serializer="raw", value_serializer="raw"))
    snapshots = Snapshots(worker, settings.pipeline.topic(AGGREGATES_TOPIC))
    _connect_life_cycle(app, worker)
    app.timer(interval=settings.snapshot_s)(snapshots.publish)
    _add_views(app, worker, snapshots)
    return app


def _new_app(settings: StreamSettings) -> Any:
    pipeline = settings.pipeline
    datadir = Path(pipeline.state_dir) / "streams" / f"{settings.app_id}-{settings.web_port}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust_compat.batch_app_class()(
        settings.app_id,
        **faust_app_options(pipeline),
        store="memory://",
        datadir=str(datadir),
        web_host="127.0.0.1",
        web_bind=pipeline.bind_host,
        web_port=settings.web_port,
        topic_partitions=pipeline.partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=SESSION_TIMEOUT_S / 4,
        broker_max_poll_records=MAX_POLL_RECORDS,
        consumer_max_fetch_size=MAX_FETCH_BYTES_PER_PARTITION,
        autodiscover=False,
        web_enabled=True,
    )


def _connect_life_cycle(app: Any, worker: StreamWorker) -> None:
    """Start-up (producer, replicas), rebalances and the stop, wired to faust's signals."""
    settings = worker.settings

    async def start() -> None:
        await worker.start_producer()
        await worker.wait_until_ready(REPLICA_WAIT_S)

    async def follow_replicas() -> None:
        handlers = {
            settings.members_topic: member_handler(worker.members),
            settings.partials_topic: partials_handler(worker.partials),
        }
        try:
            bootstrap = settings.pipeline.kafka_bootstrap
            options = aiokafka_options(settings.pipeline)
            await follow_topics(bootstrap, handlers, stopped=worker.stopped, ready=worker.replicas_ready,
                                options=options)
        except Exception:
            log.exception("replica follower failed")
            raise

    async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        await worker.on_revoked(revoked)

    async def on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        await worker.on_assigned(assigned)

    async def on_stop(app: Any, **kwargs: Any) -> None:
        await worker.stop()

    app.task(start)
    app.task(follow_replicas)
    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)
    app.on_before_shutdown.connect(on_stop)


def _add_views(app: Any, worker: StreamWorker, snapshots: Snapshots) -> None:
    async def aggregates_view(web: Any, request: Any) -> Any:
        return web.json(snapshots.document())

    async def health_view(web: Any, request: Any) -> Any:
        state = worker.health.state()
        reasons = list(state.reasons)
        stalled = worker.lagging()
        if stalled:
            reasons.append(stalled)
        document = {
            **state.as_json(),
            "status": "not ready" if reasons else "ready",
            "reasons": reasons,
            "replicas_ready": worker.replicas_ready.is_set(),
            "partitions": sorted(worker.owned()),
        }
        return web.json(document, status=503 if reasons else 200)

    async def trace_view(web: Any, request: Any) -> Any:
        event_id = request.query.get("event_id", "")
        if not _UUID.fullmatch(event_id):
            return web.json({"error": "event_id must be a UUID in canonical form"}, status=400)
        found = worker.trace(event_id)
        return web.json({"event_id": event_id, "partitions": sorted(worker.owned()), "found": found})

    async def metrics_view(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app.page("/aggregates")(aggregates_view)
    app.page("/health")(health_view)
    app.page("/health/ready")(health_view)
    app.page("/metrics")(metrics_view)
    app.page("/trace")(trace_view)

