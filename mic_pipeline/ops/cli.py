"""Operator subcommands: `status`, `drain`, `deadletters list|replay`, `web`, `run`, `demo`, `report`.

Thresholds of `status` come from `MIC_STATUS_*` variables (see `mic_pipeline.ops.verdict`) and are
overridden by the flags. `status` and `web` also ask the components' readiness endpoints
(`--health-url`, `MIC_HEALTH_URLS` or a live `run`'s; see `mic_pipeline.ops.components`).
Exit codes: `status` 0 OK / 1 DEGRADED / 2 FAILING; `drain` 0 drained / 1 still lagging at the
timeout (or broker unreachable); `deadletters` 0 (skipped replays are reported, not errors), 2 for
bad arguments, 3 when the broker cannot be reached. Every value that came from events, dead letters
or the broker is printed escaped (`mic_pipeline.text`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

from mic_pipeline.ops.cli_common import (
    EXIT_KAFKA,
    add_health_urls,
    broker_unreachable,
    health_endpoints,
    kafka_errors,
)
from mic_pipeline.text import printable, printable_json

__all__ = ["EXIT_KAFKA", "kafka_errors", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operator subcommands."""
    status = subparsers.add_parser(
        "status", help="consumer lag, throughput, dead letters, warehouse freshness and a verdict"
    )
    status.add_argument("--json", action="store_true", help="print the status document as JSON")
    _add_groups(status)
    add_health_urls(status)
    _add_thresholds(status)
    status.set_defaults(handler=run_status)

    drain = subparsers.add_parser("drain", help="wait until every consumer group has caught up")
    drain.add_argument("--timeout", type=float, required=True, metavar="S", help="give up after S seconds")
    drain.add_argument(
        "--settle", type=float, default=3.0, metavar="S", help="lag must stay zero this long (default 3)"
    )
    _add_groups(drain)
    drain.set_defaults(handler=run_drain)

    dead = subparsers.add_parser("deadletters", help="list or replay dead letters")
    dead_commands = dead.add_subparsers(dest="deadletters_command", required=True, metavar="ACTION")
    listing = dead_commands.add_parser("list", help="show dead letters")
    _add_selection(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="show the newest N that match (0: all; default 100)",
    )
    listing.set_defaults(handler=run_deadletters_list)
    replay = dead_commands.add_parser("replay", help="re-publish dead letters to their original topic")
    _add_selection(replay)
    replay.add_argument("--dry-run", action="store_true", help="decide and report, publish nothing")
    replay.add_argument("--force", action="store_true", help="replay even what still fails validation")
    replay.set_defaults(handler=run_deadletters_replay)

    web = subparsers.add_parser("web", help="serve the operators' live web page")
    web.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0 picks a free one)")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    web.add_argument(
        "--streams-url",
        help="the stream's aggregates URL (env MIC_STREAMS_URL; default http://127.0.0.1:"
        "$MIC_STREAMS_WEB_PORT/aggregates, port 6066)",
    )
    web.add_argument(
        "--refresh", type=float, default=3.0, metavar="S", help="page refresh interval (default 3 s)"
    )
    web.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="also serve Prometheus /metrics on P (status gauges: mic_pipeline.ops.ops_metrics), measuring "
        "every refresh interval",
    )
    _add_groups(web)
    add_health_urls(web)
    _add_thresholds(web)
    web.set_defaults(handler=run_web)

    from mic_pipeline.ops import trace_cli

    trace_cli.register(subparsers)

    from mic_pipeline.ops import demo_cli

    demo_cli.register(subparsers)


def _add_groups(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--group",
        action="append",
        dest="groups",
        metavar="G",
        help="consumer group to watch (repeatable; default: every group with offsets on our topics)",
    )


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason", action="append", dest="reasons", metavar="R", help="only this reason (repeatable)"
    )
    parser.add_argument(
        "--event-id", action="append", dest="event_ids", metavar="ID", help="only this event_id (repeatable)"
    )
    parser.add_argument("--since", metavar="T", help="failed at or after T: 15m, 2h, 7d or an ISO timestamp")


def _add_thresholds(parser: argparse.ArgumentParser) -> None:
    from mic_pipeline.ops.verdict import ENV_VARIABLES

    helps = {
        "max_lag_records": "DEGRADED above this many unprocessed records in a group (default off)",
        "max_lag_seconds": "DEGRADED when a group's oldest unprocessed record is older (s; default off)",
        "lag_margin_seconds": "a group's oldest unprocessed record may be its commit interval plus this "
        "old before it is behind (s, default 60)",
        "failing_lag_seconds": "FAILING when a group's oldest unprocessed record is older (s, default 900)",
        "max_freshness_seconds": "DEGRADED when a family's records wait longer for a sink to land them "
        "(s, default 120)",
        "max_dead_letters_per_hour": "DEGRADED above this many dead letters in the last hour",
        "failing_not_ready_seconds": "FAILING when a component has not been ready for longer (s)",
        "window_seconds": "sample the offsets over this window (s; default: long enough for every "
        "group's commit interval, 5-15 s; 0: one sample)",
    }
    off = {"lag_margin_seconds": "", "window_seconds": "; 'off': automatic"}
    for name, variable in ENV_VARIABLES.items():
        disables = off.get(name, "; 'off' disables")
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar="N",
            help=f"{helps[name]}{disables} (env {variable})",
        )
    parser.add_argument(
        "--commit-interval",
        action="append",
        dest="commit_intervals",
        metavar="GROUP=S",
        help="a consumer group's commit interval (repeatable; env MIC_STATUS_COMMIT_INTERVALS; known: "
        "the stream 1 s, the sinks 2 s, others 5 s)",
    )


def thresholds_from_args(args: argparse.Namespace) -> Any:
    """Environment thresholds with the flags given on the command line applied on top."""
    from dataclasses import replace

    from mic_pipeline.ops.verdict import ENV_VARIABLES, Thresholds, parse_commit_intervals, parse_threshold

    thresholds = Thresholds.from_env()
    overrides = {
        name: parse_threshold(name, getattr(args, name), "--" + name.replace("_", "-"))
        for name in ENV_VARIABLES
        if getattr(args, name, None) is not None
    }
    if overrides.get("lag_margin_seconds", 0.0) is None:
        raise ValueError("--lag-margin-seconds must be a number (this rule cannot be off)")
    if getattr(args, "commit_intervals", None):
        try:
            given = parse_commit_intervals(args.commit_intervals)
        except ValueError as error:
            raise ValueError(f"--commit-interval {error}") from None
        overrides["commit_intervals"] = tuple({**dict(thresholds.commit_intervals), **dict(given)}.items())
    return replace(thresholds, **overrides)


def run_status(args: argparse.Namespace) -> int:
    """`mic-pipeline status`."""
    import orjson

    from mic_pipeline.config import Settings
    from mic_pipeline.ops.status import collect_status, render_text
    from mic_pipeline.ops.verdict import evaluate, snapshot_to_json

    settings = Settings.from_env()
    try:
        thresholds = thresholds_from_args(args)
        endpoints = health_endpoints(settings, args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    snapshot = collect_status(
        settings,
        args.groups,
        health_endpoints=endpoints,
        window_s=thresholds.window_seconds,
        intervals=thresholds.intervals,
    )
    assessment = evaluate(snapshot, thresholds)
    if args.json:
        document = snapshot_to_json(snapshot, assessment, thresholds)
        print(printable_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()))
    else:
        print(render_text(snapshot, assessment))
    return assessment.verdict.exit_code


def run_drain(args: argparse.Namespace) -> int:
    """`mic-pipeline drain`."""
    from kafka.errors import KafkaError

    from mic_pipeline.config import Settings
    from mic_pipeline.ops.drain import drain

    try:
        result = drain(Settings.from_env(), args.groups, args.timeout, settle_s=args.settle)
    except KafkaError as error:
        print(f"drain: broker unreachable: {error}", file=sys.stderr)
        return 1
    if result.drained:
        print(f"drained: every consumer group is caught up (after {result.elapsed_s:.1f} s)")
        return 0
    print(f"not drained after {result.elapsed_s:.1f} s; still pending:", file=sys.stderr)
    for line in result.pending:
        print(f"  {printable(line)}", file=sys.stderr)
    return 1


def _selection(args: argparse.Namespace) -> Any:
    from datetime import UTC, datetime

    from mic_pipeline.ops.deadletters import DeadLetterFilter, parse_since

    return DeadLetterFilter(
        reasons=frozenset(args.reasons or ()),
        event_ids=frozenset(args.event_ids or ()),
        since=None if args.since is None else parse_since(args.since, datetime.now(UTC)),
    )


def run_deadletters_list(args: argparse.Namespace) -> int:
    """`mic-pipeline deadletters list`: the newest `--limit` matches by `failed_at`, oldest first."""
    import heapq

    import orjson

    from mic_pipeline.config import Settings
    from mic_pipeline.ops.deadletter_io import iter_dead_letters
    from mic_pipeline.ops.deadletters import DeadLetterView, format_letter

    try:
        selection = _selection(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def newest_first(letter: DeadLetterView) -> tuple[float, tuple[int, int]]:
        failed = float("-inf") if letter.failed_at is None else letter.failed_at.timestamp()
        return failed, letter.position

    counts: dict[str, int] = {}

    def counted(letters: Iterator[DeadLetterView]) -> Iterator[DeadLetterView]:
        for letter in letters:
            counts[letter.reason] = counts.get(letter.reason, 0) + 1
            yield letter

    settings = Settings.from_env()
    letters = counted(iter_dead_letters(settings, selection))
    try:
        kept = heapq.nlargest(args.limit, letters, key=newest_first) if args.limit > 0 else list(letters)
    except kafka_errors() as error:
        return broker_unreachable("deadletters list", settings, error)
    kept.sort(key=newest_first)
    for letter in kept:
        if args.json:
            print(printable_json(orjson.dumps(letter.to_json()).decode()))
        else:
            print(printable(format_letter(letter)))
    if not args.json:
        summary = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())) or "none"
        print(printable(f"{sum(counts.values())} dead letters matched ({summary}); showing {len(kept)}"))
    return 0


def run_deadletters_replay(args: argparse.Namespace) -> int:
    """`mic-pipeline deadletters replay`."""
    from mic_pipeline.config import Settings
    from mic_pipeline.ops.deadletter_io import iter_dead_letters, replay
    from mic_pipeline.ops.deadletters import summarize_decisions

    try:
        selection = _selection(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    try:
        decisions = replay(
            settings, list(iter_dead_letters(settings, selection)), force=args.force, dry_run=args.dry_run
        )
    except kafka_errors() as error:
        return broker_unreachable("deadletters replay", settings, error)
    for decision in decisions:
        letter = decision.letter
        action = "would replay" if args.dry_run else "replayed"
        outcome = (
            f"skipped ({decision.skip_reason})"
            if decision.skip_reason
            else f"{action} -> {decision.target_topic}"
        )
        print(printable(f"{letter.reason:<20} {letter.event_id or '-':<36} {outcome}"))
    summary = summarize_decisions(decisions)
    skipped = ", ".join(f"{reason}: {n}" for reason, n in summary["skipped"].items()) or "none"
    verb = "would replay" if args.dry_run else "replayed"
    print(printable(f"{summary['selected']} selected, {verb} {summary['replayed']}, skipped {skipped}"))
    return 0


def run_web(args: argparse.Namespace) -> int:
    """`mic-pipeline web`: serve until interrupted (SIGINT) or SIGTERM (then exit 0)."""
    import os
    import signal
    import threading

    from mic_pipeline.config import Settings
    from mic_pipeline.ops.web import default_streams_url, make_server

    settings = Settings.from_env()
    try:
        thresholds = thresholds_from_args(args)
        endpoints = health_endpoints(settings, args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    server = make_server(
        settings,
        thresholds=thresholds,
        groups=args.groups,
        health_endpoints=endpoints,
        streams_url=args.streams_url or default_streams_url(dict(os.environ)),
        port=args.port,
        host=args.host,
        refresh_ms=int(args.refresh * 1000),
    )
    stop_sampling = threading.Event()
    if args.metrics_port is not None:
        from mic_pipeline import metrics

        metrics.serve(args.metrics_port, host=args.host)
        # Prometheus scrapes the gauges whether or not a page polls: measure every refresh interval
        server.RequestHandlerClass.status_source.sample_every(args.refresh, stop_sampling)  # type: ignore[attr-defined]
    port = server.server_address[1]
    print(f"operators' page on http://{args.host}:{port}/ (status: /api/status, aggregates: /api/aggregates)")
    sys.stdout.flush()

    def stop_serving(signum: int, _frame: object) -> None:
        # serve_forever() runs on this thread: shutdown() must be called from another one
        threading.Thread(target=server.shutdown, name="web-shutdown").start()

    signal.signal(signal.SIGTERM, stop_serving)
    try:
        server.serve_forever()
    finally:
        stop_sampling.set()
        server.server_close()
    return 0

