"""Subcommand `bench`: the pipeline and its peers measured in one run (`mic_pipeline.bench`)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from mic_pipeline.bench.names import ALL_STAGES

DEV_BOOTSTRAP = "127.0.0.1:29092"
DEV_POSTGRES = "postgresql+psycopg://mic:mic@127.0.0.1:25432/mic_test"
QUICK_RECORDS = 2000
FULL_RECORDS = 100_000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `bench` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="measure the pipeline and its peers in one run; write bench/results/pipeline.{json,md}",
        description="Peers (bare aiokafka, faust's ceiling, Quix Streams), the stream worker (1 and 2), "
        "each sink alone, end to end and latency, in one run on one broker over one simulator backlog.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run of the harness (< 3 min): {QUICK_RECORDS} records, 2 partitions, sinks with "
        "--max-batch-wait 0.5, 2 s per latency rate, no ramp",
    )
    parser.add_argument(
        "--records", type=int, help=f"backlog size (default {FULL_RECORDS}; --quick {QUICK_RECORDS})"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="directory of the results")
    parser.add_argument("--bootstrap", help=f"Kafka (default MIC_KAFKA_BOOTSTRAP, else {DEV_BOOTSTRAP})")
    parser.add_argument(
        "--postgres-url",
        help="PostgreSQL server for the PostgreSQL sink (default MIC_TEST_POSTGRES_URL, else the "
        "dev server); a fresh schema is made and dropped",
    )
    parser.add_argument("--stages", help=f"comma-separated subset of {','.join(ALL_STAGES)} (default all)")
    parser.add_argument("--skip", default="", help="comma-separated stages to leave out")
    parser.add_argument("--rates", default="500,2000", help="offered rates of the latency runs (events/s)")
    parser.add_argument("--rate-seconds", type=float, help="seconds per fixed rate (default 20; --quick 2)")
    parser.add_argument("--no-ramp", action="store_true", help="no ramp towards the highest rate that holds")
    parser.add_argument(
        "--hold-p99", type=float, default=3.0, help="p99 (s) under which a rate holds (default 3)"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=0.1, help="warehouse poll interval, s (default 0.1)"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        help="partitions per topic (default 6; --quick 2: fewer batches to wait for)",
    )
    parser.add_argument("--seed", type=int, default=11, help="simulator seed (default 11)")
    parser.add_argument("--scale", type=float, default=1.0, help="simulator population scale (default 1)")
    parser.add_argument(
        "--clock-step",
        type=int,
        default=2,
        help="simulator event-time step between valid events, s (default 2: ~2 days of event time per "
        "100k records, a busy platform catching up; the simulator's default, 900, spreads them over "
        "~3 years)",
    )
    parser.add_argument(
        "--member-wait",
        type=float,
        default=300.0,
        help="the worker's MIC_STREAMS_MEMBER_WAIT_S (default 300, as in production)",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the stages' logs and data (temp dir)")
    parser.add_argument(
        "--no-start-broker", action="store_true", help="fail when no broker answers instead of starting one"
    )
    parser.set_defaults(handler=run_bench_command)


def _stages(args: argparse.Namespace) -> tuple[str, ...]:
    chosen = [s for s in (args.stages or ",".join(ALL_STAGES)).split(",") if s]
    skipped = {s for s in args.skip.split(",") if s}
    unknown = sorted({*chosen, *skipped} - set(ALL_STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(ALL_STAGES)}")
    return tuple(s for s in ALL_STAGES if s in chosen and s not in skipped)


def options_from(args: argparse.Namespace) -> object:
    """The run's `Options` from the parsed arguments (ValueError on a bad value)."""
    from mic_pipeline.bench.context import Options

    quick = bool(args.quick)
    records = args.records or (QUICK_RECORDS if quick else FULL_RECORDS)
    rates = tuple(float(rate) for rate in args.rates.split(",") if rate)
    if records < 100 or not rates or min(rates) <= 0:
        raise ValueError("--records must be >= 100 and --rates positive")
    stages = _stages(args)
    if "quix" in stages and importlib.util.find_spec("quixstreams") is None:
        raise ValueError(
            "the Quix Streams peer needs quixstreams: pip install -e '.[bench]' (or --skip quix)"
        )
    return Options(
        records=records,
        quick=quick,
        out=args.out,
        bootstrap=args.bootstrap or os.environ.get("MIC_KAFKA_BOOTSTRAP") or DEV_BOOTSTRAP,
        partitions=args.partitions or (2 if quick else 6),
        seed=args.seed,
        scale=args.scale,
        clock_step_s=args.clock_step,
        postgres_url=args.postgres_url or os.environ.get("MIC_TEST_POSTGRES_URL") or DEV_POSTGRES,
        stages=stages,
        rates=rates,
        ramp=not (quick or args.no_ramp),
        rate_seconds=args.rate_seconds or (2.0 if quick else 20.0),
        ramp_seconds=15.0,
        hold_p99_s=args.hold_p99,
        poll_interval_s=args.poll_interval,
        member_wait_s=args.member_wait,
        stage_timeout_s=240.0 if quick else 900.0,
        keep_work=args.keep_work,
        sink_args=("--max-batch-wait", "0.5") if quick else (),
        start_broker=not args.no_start_broker,
    )


def _say(message: str) -> None:
    print(f"bench [{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_bench_command(args: argparse.Namespace) -> int:
    """`mic-pipeline bench`."""
    from mic_pipeline.bench.context import Options
    from mic_pipeline.bench.run import run_bench

    try:
        options = options_from(args)
    except ValueError as error:
        print(f"mic-pipeline bench: {error}", file=sys.stderr)
        return 2
    assert isinstance(options, Options)
    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: the children are stopped on the way out
    try:
        document = run_bench(options, _say)
    except Exception as error:  # one line, not a traceback; the stage logs are kept (see the last line)
        print(f"mic-pipeline bench: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    failed = [name for name, stage in document["stages"].items() if "failed" in stage]
    _say(f"done in {document['wall_s']:.0f} s; results in {options.out}/pipeline.json and pipeline.md")
    if failed:
        print(f"mic-pipeline bench: stage(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
