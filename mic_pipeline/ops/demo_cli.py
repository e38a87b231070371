"""Subcommands `run` (the pipeline's processes under one supervisor), `demo` and `report`.

Exit codes: `run` 0 after SIGTERM/SIGINT, 1 when a child died or was not ready in time; `demo` 0 only
when the run reconciles, 1 when it does not, 2 when the pipeline could not be brought up; `report` 0,
2 when the warehouse cannot be read.
"""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `run`, `demo` and `report`."""
    from mic_pipeline.ops.supervisor import (
        DEFAULT_PARQUET_METRICS_PORT,
        DEFAULT_SQL_METRICS_PORT,
        DEFAULT_STOP_TIMEOUT_S,
    )

    run = subparsers.add_parser(
        "run", help="run the stream worker and both sinks (and optionally the web page) together"
    )
    run.add_argument(
        "--streams-port",
        type=int,
        help="the stream worker's /aggregates, /health, /metrics port (env MIC_STREAMS_WEB_PORT, 6066)",
    )
    run.add_argument(
        "--sql-metrics-port",
        type=int,
        default=DEFAULT_SQL_METRICS_PORT,
        help=f"the SQL sink's /metrics and /health port (default {DEFAULT_SQL_METRICS_PORT})",
    )
    run.add_argument(
        "--parquet-metrics-port",
        type=int,
        default=DEFAULT_PARQUET_METRICS_PORT,
        help=f"the Parquet sink's /metrics and /health port (default {DEFAULT_PARQUET_METRICS_PORT})",
    )
    run.add_argument(
        "--stream-workers",
        type=int,
        default=1,
        metavar="N",
        help="stream worker processes sharing the partitions, on ports streams-port .. +N-1 (default 1)",
    )
    run.add_argument("--web-port", type=int, help="also serve the operators' web page on this port")
    run.add_argument("--member-wait", type=float, metavar="S", help="the stream's wait for a late member")
    run.add_argument("--no-gate", action="store_true", help="run the sinks without the quality gate")
    run.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT_S,
        metavar="S",
        help=f"SIGKILL children still running S seconds after SIGTERM (default {DEFAULT_STOP_TIMEOUT_S:.0f})",
    )
    run.add_argument(
        "--ready-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="fail when a child's /health is not 200 after S seconds (default 180; 0: do not wait)",
    )
    run.set_defaults(handler=run_pipeline)

    from mic_pipeline.ops.demo import register_demo
    from mic_pipeline.ops.report import register_report

    register_demo(subparsers)
    register_report(subparsers)


def run_pipeline(args: argparse.Namespace) -> int:
    """`mic-pipeline run`: supervise until SIGTERM/SIGINT or a child's death."""
    from mic_pipeline.config import Settings
    from mic_pipeline.ops.supervisor import PipelinePorts, Supervisor, pipeline_children, run_supervised

    settings = Settings.from_env()
    streams_port = args.streams_port or int(os.environ.get("MIC_STREAMS_WEB_PORT", "6066"))
    ports = PipelinePorts(streams_port, args.sql_metrics_port, args.parquet_metrics_port, args.web_port)
    children = pipeline_children(
        settings,
        ports,
        member_wait_s=args.member_wait,
        sink_arguments=("--no-gate",) if args.no_gate else (),
        stream_workers=args.stream_workers,
    )
    supervisor = Supervisor(children, stop_timeout_s=args.stop_timeout)
    return run_supervised(supervisor, args.ready_timeout or None)
