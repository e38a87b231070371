"""The processes `mic-pipeline run` (and the demo) supervise: their command lines, environment, ports
and the URLs that say whether each is ready."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mic_pipeline.config import HealthEndpoint, Settings

DEFAULT_STREAMS_PORT = 6066
DEFAULT_SQL_METRICS_PORT = 9101
DEFAULT_PARQUET_METRICS_PORT = 9102


@dataclass(frozen=True)
class ChildSpec:
    """One child: its name (the log prefix), command line, extra environment and the URL that answers
    200 once it is ready (None: ready once started)."""

    name: str
    command: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    health_url: str | None = None


def mic_command(*arguments: str) -> tuple[str, ...]:
    """The command line of `mic-pipeline ARGUMENTS` run by this interpreter."""
    return (sys.executable, "-m", "mic_pipeline.cli", *arguments)


def health_urls_value(endpoints: Sequence[HealthEndpoint]) -> str:
    """`MIC_HEALTH_URLS` naming `endpoints`."""
    return ",".join(str(endpoint) for endpoint in endpoints)


def settings_environment(settings: Settings) -> dict[str, str]:
    """The `MIC_*` variables that make a child's `Settings.from_env()` equal `settings` (its Kafka
    security settings included: a password read from a file is passed as that file)."""
    return {
        **settings.kafka_security.environment(),
        "MIC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "MIC_WAREHOUSE_DIR": str(settings.warehouse_dir),
        "MIC_DATABASE_URL": settings.database_url,
        "MIC_TOPIC_PREFIX": settings.topic_prefix,
        "MIC_PARTITIONS": str(settings.partitions),
        "MIC_STATE_DIR": str(settings.state_dir),
        "MIC_CACHE_DIR": str(settings.cache_dir),
        "MIC_BIND_HOST": settings.bind_host,
        "MIC_HEALTH_URLS": health_urls_value(settings.health_urls),
    }


@dataclass(frozen=True)
class PipelinePorts:
    """The HTTP ports of the pipeline's children (web None: no web page)."""

    streams: int = DEFAULT_STREAMS_PORT
    sql_metrics: int = DEFAULT_SQL_METRICS_PORT
    parquet_metrics: int = DEFAULT_PARQUET_METRICS_PORT
    web: int | None = None


def pipeline_groups(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """The consumer groups of the children of `pipeline_children` run with `environ`: the stream's
    (its faust app id, `MIC_STREAMS_APP_ID` or `<prefix>mic-streams`) and the two sinks'."""
    from streams.settings import StreamSettings

    app_id = StreamSettings.from_env(settings, dict(environ)).app_id
    return [app_id, *(settings.topic(f"mic-sink-{kind}") for kind in ("sql", "parquet"))]


def pipeline_health_endpoints(ports: PipelinePorts, stream_workers: int = 1) -> tuple[HealthEndpoint, ...]:
    """The readiness URLs of the stream workers (faust's `/health`, 503 with the reasons when not
    ready) and both sinks (`/health/ready` of `mic_pipeline.metrics.serve`) of
    `pipeline_children(settings, ports, stream_workers=...)`, named as their children."""
    streams = [
        HealthEndpoint(
            f"http://127.0.0.1:{ports.streams + i}/health",
            "streams" if stream_workers == 1 else f"streams-{i}",
        )
        for i in range(stream_workers)
    ]
    sinks = [
        HealthEndpoint(f"http://127.0.0.1:{port}/health/ready", f"sink-{kind}")
        for kind, port in (("sql", ports.sql_metrics), ("parquet", ports.parquet_metrics))
    ]
    return (*streams, *sinks)


def pipeline_children(
    settings: Settings,
    ports: PipelinePorts,
    *,
    member_wait_s: float | None = None,
    sink_arguments: Sequence[str] = (),
    stream_workers: int = 1,
    groups: Sequence[str] = (),
) -> list[ChildSpec]:
    """The stream workers, the SQL and Parquet sinks and (when `ports.web`) the web page, which
    watches `groups` by name (`pipeline_groups`: then a group that never committed is seen).

    `stream_workers` processes share the stream's consumer group (faust spreads the partitions over
    them); worker i serves HTTP on `ports.streams + i`, and any of them answers for all partitions.

    The sinks' consumer groups get the topic prefix (`<prefix>mic-sink-sql`), so runs with different
    prefixes never share a group; without a prefix they are the sinks' default groups. The web page
    watches the others' readiness (`MIC_HEALTH_URLS`).
    """
    if stream_workers < 1:
        raise ValueError(f"stream_workers must be >= 1, got {stream_workers}")
    children = []
    for i in range(stream_workers):
        port = ports.streams + i
        streams_args = ["streams", "--web-port", str(port)]
        if member_wait_s is not None:
            streams_args += ["--member-wait", str(member_wait_s)]
        children.append(
            ChildSpec(
                "streams" if stream_workers == 1 else f"streams-{i}",
                mic_command(*streams_args),
                {"MIC_STREAMS_WEB_PORT": str(port)},
                f"http://127.0.0.1:{port}/health",
            )
        )
    for kind, port in (("sql", ports.sql_metrics), ("parquet", ports.parquet_metrics)):
        arguments = (
            "sink",
            kind,
            "--group-id",
            settings.topic(f"mic-sink-{kind}"),
            "--metrics-port",
            str(port),
        )
        children.append(
            ChildSpec(
                f"sink-{kind}",
                mic_command(*arguments, *sink_arguments),
                {},
                f"http://127.0.0.1:{port}/health",
            )
        )
    if ports.web is not None:
        children.append(_web_child(ports, ports.web, stream_workers, groups))
    return children


def _web_child(ports: PipelinePorts, web_port: int, stream_workers: int, groups: Sequence[str]) -> ChildSpec:
    streams_url = f"http://127.0.0.1:{ports.streams}/aggregates"
    watched = health_urls_value(pipeline_health_endpoints(ports, stream_workers))
    named = [argument for group in groups for argument in ("--group", group)]
    return ChildSpec(
        "web",
        mic_command("web", "--port", str(web_port), "--streams-url", streams_url, *named),
        {"MIC_HEALTH_URLS": watched},
        f"http://127.0.0.1:{web_port}/health/live",
    )
