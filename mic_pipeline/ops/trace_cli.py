"""`mic-pipeline trace EVENT_ID [--json]` and `trace --company INN --since T` (`mic_pipeline.ops.trace`).

Exit codes: 0 found, 1 never seen (or not found because a part could not answer: the notes say
which), 2 bad arguments, 3 the broker cannot be reached.
"""

from __future__ import annotations

import argparse
import sys

from mic_pipeline.ops.cli_common import (
    add_health_urls,
    broker_unreachable,
    health_endpoints,
    kafka_errors,
)
from mic_pipeline.text import printable, printable_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trace = subparsers.add_parser(
        "trace",
        help="what happened to an event: its input records, the stream's decision, the warehouse rows",
        description="`trace EVENT_ID`: every input record carrying the event_id, the stream's decision "
        "for each (accepted, duplicate of which origin, dead-lettered with reason, parked: for which "
        "member and until when), the enriched record, the SQL row (landed_at) and the Parquet file, or "
        "the dead letter and the quarantine. `trace --company INN --since T`: the company's recent "
        "events with their outcomes. Exit 0 found, 1 never seen (or not found: incomplete), 2 usage, "
        "3 broker unreachable.",
    )
    trace.add_argument("event_id", nargs="?", metavar="EVENT_ID", help="the event's event_id (a UUID)")
    trace.add_argument("--company", metavar="INN", help="list a company's recent events instead")
    trace.add_argument("--since", metavar="T", default="24h", help="with --company: 15m, 2h, 7d or ISO (24h)")
    trace.add_argument("--limit", type=int, default=100, metavar="N", help="with --company: at most N (100)")
    trace.add_argument("--json", action="store_true", help="print the JSON document")
    trace.add_argument(
        "--streams-url",
        action="append",
        dest="streams_urls",
        metavar="URL",
        help="a stream worker's URL (repeatable; default: the stream workers among the health URLs)",
    )
    add_health_urls(trace)
    trace.set_defaults(handler=run_trace)


def run_trace(args: argparse.Namespace) -> int:
    """`mic-pipeline trace`."""
    import re
    from datetime import UTC, datetime

    import orjson

    from mic_pipeline.config import Settings
    from mic_pipeline.ops.deadletters import parse_since
    from mic_pipeline.ops.trace import stream_workers, trace_company, trace_event
    from mic_pipeline.ops.trace_text import render_company, render_event

    settings = Settings.from_env()
    if (args.event_id is None) == (args.company is None):
        print("error: give either EVENT_ID or --company INN", file=sys.stderr)
        return 2
    if args.company is not None:
        if not re.fullmatch(r"\d{10}|\d{12}", args.company):
            shown = printable(f"error: --company must be an INN (10 or 12 digits), got {args.company!r}")
            print(shown, file=sys.stderr)
            return 2
        try:
            since = parse_since(args.since, datetime.now(UTC))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        document = trace_company(settings, args.company, since, max(1, args.limit))
        text = render_company(document)
        code = 0
    else:
        if not re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", args.event_id):
            print(printable(f"error: EVENT_ID must be a UUID, got {args.event_id!r}"), file=sys.stderr)
            return 2
        try:
            workers = stream_workers(health_endpoints(settings, args), args.streams_urls or ())
            document = trace_event(settings, args.event_id.lower(), workers)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except kafka_errors() as error:
            return broker_unreachable("trace", settings, error)
        text = render_event(document)
        code = 1 if document["outcome"] == "never seen" or document["outcome"].startswith("not found") else 0
    if args.json:
        print(printable_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()))
    else:
        print(text)
    return code
