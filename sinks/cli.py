"""Subcommands `sink sql|parquet`, `compact`, `check` and `quarantine list|release` of the sinks."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from mic_pipeline.config import Settings
from sinks import quarantine_cli
from sinks.app import DEFAULT_GROUP_IDS, SINK_KINDS, SinkKind


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands."""
    sink = subparsers.add_parser("sink", help="run one warehouse sink until SIGTERM/SIGINT")
    sink.add_argument("kind", choices=SINK_KINDS, help="which destination")
    sink.add_argument("--group-id", default=None, help="consumer group (default mic-sink-<kind>)")
    sink.add_argument("--max-batch-rows", type=int, default=10_000, help="rows per batch (default 10000)")
    sink.add_argument(
        "--max-batch-wait", type=float, default=2.0, help="seconds a partial batch may wait (default 2)"
    )
    sink.add_argument(
        "--live-batch-wait",
        type=float,
        default=0.5,
        help="once caught up, seconds the oldest record waits before every buffer is written together "
        "(default 0.5)",
    )
    sink.add_argument(
        "--instance-id", default=None, help="static group membership id (fast restarts of this instance)"
    )
    sink.add_argument("--no-gate", action="store_true", help="skip the quality gate (not for production)")
    sink.add_argument("--metrics-port", type=int, default=None, help="serve /metrics and /health here")
    sink.set_defaults(handler=_run_sink)

    compact = subparsers.add_parser("compact", help="merge the small Parquet files of closed days")
    compact.add_argument(
        "--closed-before",
        default=None,
        help="compact days before this date, YYYY-MM-DD (default: today, UTC)",
    )
    compact.add_argument(
        "--group-id",
        default=DEFAULT_GROUP_IDS["parquet"],
        help="the Parquet sink's group: only its committed files are merged",
    )
    compact.set_defaults(handler=_compact)

    check = subparsers.add_parser(
        "check", help="run the quality suites over the whole warehouse; store results; build Data Docs"
    )
    check.add_argument("--docs-dir", default=None, help="Data Docs site dir (default <warehouse>/data_docs)")
    check.set_defaults(handler=_check)

    quarantine_cli.register(subparsers)


def _run_sink(args: argparse.Namespace) -> int:
    from mic_pipeline import metrics
    from mic_pipeline.gcpolicy import tune_gc
    from mic_pipeline.health import Health
    from sinks.app import build_gate, run_sink
    from sinks.runner import RunnerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # the runner logs rebalances itself
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines precede every start-up
    settings = Settings.from_env()
    kind: SinkKind = args.kind
    stop = threading.Event()

    def _request_stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: finishing the current batches", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    health = Health(f"sink-{kind}")
    # not ready until the runner has its clients and its group (it clears "start"); the quality gate
    # alone takes seconds to load, and /health is served from here on
    health.problem("start", "starting: loading the quality gate", sticky=True)
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, host=settings.bind_host, health=health)
    config = RunnerConfig(
        group_id=args.group_id or DEFAULT_GROUP_IDS[kind],
        max_batch_rows=args.max_batch_rows,
        max_batch_wait_s=args.max_batch_wait,
        live_batch_wait_s=args.live_batch_wait,
        instance_id=args.instance_id,
    )
    gate = None if args.no_gate else build_gate()
    tune_gc()  # fewer collections over the heap the gate's imports leave (`mic_pipeline.gcpolicy`)
    from kafka.errors import KafkaError

    try:
        runner = run_sink(settings, kind, config, stop.is_set, gate=gate, health=health)
    except KafkaError as error:  # the broker unreachable before the sink could join its group
        where = settings.kafka_bootstrap
        from mic_pipeline.kafka_clients import explain_kafka_error

        why = explain_kafka_error(error, settings)
        print(f"mic-pipeline sink {kind}: Kafka at {where}: {why}", file=sys.stderr)
        return 3
    print(f"sink {kind}: {runner.committed_batches} batches committed", file=sys.stderr)
    return 0


def _compact(args: argparse.Namespace) -> int:
    import datetime as dt

    from sinks.parquet.compact import compact_warehouse

    settings = Settings.from_env()
    closed_before = (
        dt.date.fromisoformat(args.closed_before) if args.closed_before else dt.datetime.now(dt.UTC).date()
    )
    report = compact_warehouse(settings, closed_before=closed_before, group_id=args.group_id)
    for line in report:
        print(line)
    return 0


def _check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sinks.quality.check import check_warehouse

    settings = Settings.from_env()
    docs_dir = Path(args.docs_dir) if args.docs_dir else settings.warehouse_dir / "data_docs"
    results = check_warehouse(settings.database_url, docs_dir, settings.warehouse_dir)
    failed = [r for r in results if not r.success]
    for result in results:
        print(f"{'ok  ' if result.success else 'FAIL'} {result.table}: {result.expectation}")
    print(f"{len(results) - len(failed)}/{len(results)} expectations passed; Data Docs in {docs_dir}")
    return 1 if failed else 0
