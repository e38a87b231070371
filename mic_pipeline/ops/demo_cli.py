"""Subcommands `run` (the pipeline's processes under one supervisor), `demo` and `report`.

`run` restarts a crashed child with backoff (`--max-restarts` within `--restart-window`, see
`mic_pipeline.ops.supervisor`) and records its children's readiness URLs in `<MIC_STATE_DIR>/run.json`
for `status` and `web` (`mic_pipeline.ops.components`).

Exit codes: `run` 0 after SIGTERM/SIGINT, 1 when a child died for good (exited more often than the
restart limit allows, or with status 2) or was not ready in time; `demo` 0 only
when the run reconciles, 1 when it does not, 2 when the pipeline could not be brought up; `report` 0,
2 when the warehouse cannot be read.
"""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `run`, `demo` and `report`."""
    from mic_pipeline.ops.children import DEFAULT_PARQUET_METRICS_PORT, DEFAULT_SQL_METRICS_PORT
    from mic_pipeline.ops.supervisor import DEFAULT_STOP_TIMEOUT_S

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
    _add_restart_flags(run)
    run.set_defaults(handler=run_pipeline)

    from mic_pipeline.ops.demo import register_demo
    from mic_pipeline.ops.report import register_report

    register_demo(subparsers)
    register_report(subparsers)


def _add_restart_flags(run: argparse.ArgumentParser) -> None:
    from mic_pipeline.ops.supervisor import RestartPolicy

    policy = RestartPolicy()
    run.add_argument(
        "--max-restarts",
        type=int,
        default=policy.max_restarts,
        metavar="N",
        help=f"restart a crashed child at most N times within the window, then stop everything and exit 1 "
        f"(default {policy.max_restarts}; 0: any crash stops the run)",
    )
    run.add_argument(
        "--restart-window",
        type=float,
        default=policy.window_s,
        metavar="S",
        help=f"the window of --max-restarts in seconds (default {policy.window_s:g})",
    )
    run.add_argument(
        "--restart-backoff",
        type=float,
        default=policy.backoff_s,
        metavar="S",
        help=f"wait S seconds before the first restart, doubling for each further restart in the window "
        f"up to {policy.max_backoff_s:g} s (default {policy.backoff_s:g})",
    )


def run_pipeline(args: argparse.Namespace) -> int:
    """`mic-pipeline run`: supervise until SIGTERM/SIGINT or a child's death for good."""
    import sys
    from dataclasses import replace

    from mic_pipeline.config import Settings, parse_port
    from mic_pipeline.ops.children import (
        PipelinePorts,
        pipeline_children,
        pipeline_groups,
        pipeline_health_endpoints,
    )
    from mic_pipeline.ops.components import remove_run_file, write_run_file
    from mic_pipeline.ops.supervisor import RestartPolicy, Supervisor, run_supervised

    settings = Settings.from_env()
    streams_port = args.streams_port or parse_port(
        "MIC_STREAMS_WEB_PORT", os.environ.get("MIC_STREAMS_WEB_PORT", "6066")
    )
    try:
        policy = replace(
            RestartPolicy(),
            max_restarts=args.max_restarts,
            window_s=args.restart_window,
            backoff_s=args.restart_backoff,
        )
        ports = PipelinePorts(streams_port, args.sql_metrics_port, args.parquet_metrics_port, args.web_port)
        children = pipeline_children(
            settings,
            ports,
            member_wait_s=args.member_wait,
            sink_arguments=("--no-gate",) if args.no_gate else (),
            stream_workers=args.stream_workers,
            groups=pipeline_groups(settings, os.environ),
        )
    except ValueError as error:
        print(f"mic-pipeline run: error: {error}", file=sys.stderr)
        return 2
    supervisor = Supervisor(children, stop_timeout_s=args.stop_timeout, restart=policy)
    write_run_file(settings.state_dir, pipeline_health_endpoints(ports, args.stream_workers))
    try:
        return run_supervised(supervisor, args.ready_timeout or None)
    finally:
        remove_run_file(settings.state_dir)
