"""Subcommands `validate`, `publish` and `simulate`.

Exit codes: 0 success; 1 some lines invalid (`validate`, `publish`); 2 usage error or unreadable
file; 3 Kafka error (unreachable broker, missing topic, records the broker did not acknowledge).

A record counts as published (sent) only once the broker acknowledged it. `publish` and `simulate`
end with how many records were handed to the producer, acknowledged and NOT acknowledged (failed),
and `--delivery-report FILE` lists each record's outcome (`producers.delivery_report`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from producers.delivery_report import DeliveryReport
    from producers.jsonl import LineVerdict
    from producers.publisher import EventPublisher

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_KAFKA = 0, 1, 2, 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands."""
    validate = subparsers.add_parser(
        "validate", help="check a JSONL file of events against the contract (nothing is published)",
        description="Check each line of FILE against the event contract. Blank lines are reported as "
        "malformed. Exit 0 if every line is valid, 1 otherwise, 2 if FILE cannot be read.")
    validate.add_argument("file", type=Path, metavar="FILE.jsonl")
    validate.add_argument("--json", action="store_true",
                          help='one JSON object per line: {"line", "ok", "reason", "detail"}')
    validate.set_defaults(handler=validate_command)

    publish = subparsers.add_parser(
        "publish", help="publish the valid events of a JSONL file",
        description="Publish each valid line of FILE to its family's topic (key = company_id); invalid "
        "lines are reported as FILE:LINE: reason: detail and make the exit code 1.")
    publish.add_argument("file", type=Path, metavar="FILE.jsonl")
    publish.add_argument("--strict", action="store_true", help="publish nothing if any line is invalid")
    publish.add_argument("--raw", action="store_true",
                         help="publish every line untouched to --topic, unchecked "
                         "(key: the company_id if readable)")
    publish.add_argument("--topic",
                         help="logical topic for --raw, e.g. mic.orders (the run's prefix is added)")
    publish.add_argument("--timeout", type=float, default=30.0, help="Kafka timeout in seconds (default 30)")
    _add_report_option(publish, "line")
    publish.set_defaults(handler=publish_command)

    simulate = subparsers.add_parser(
        "simulate", help="publish a simulated stream of platform events",
        description="Publish simulated platform events at --rate per second for --duration seconds.")
    simulate.add_argument("--rate", type=float, required=True,
                          help="records per second (0: as fast as possible)")
    simulate.add_argument("--duration", type=float, required=True, help="seconds")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--invalid-fraction", type=float, default=0.0,
                          help="share of invalid records, spread over every dead-letter reason")
    simulate.add_argument("--duplicate-fraction", type=float, default=None,
                          help="share of re-sent valid records (default: invalid fraction / 5)")
    simulate.add_argument("--scale", type=float, default=1.0,
                          help="population size factor (1 = 22,709 members)")
    simulate.add_argument("--clock-step", type=int, default=900,
                          help="mean simulated seconds between valid events (default 900)")
    simulate.add_argument("--ground-truth", type=Path, help="write every record's ground truth here (JSONL)")
    simulate.add_argument("--timeout", type=float, default=30.0, help="Kafka timeout in seconds (default 30)")
    _add_report_option(simulate, "seq")
    simulate.set_defaults(handler=simulate_command)


def _add_report_option(parser: argparse.ArgumentParser, tag: str) -> None:
    parser.add_argument(
        "--delivery-report", type=Path, metavar="FILE",
        help=f"write one JSON line per record handed to the producer: {{{tag!r}, topic, acknowledged, "
        "partition and offset, or error}; the NOT acknowledged ones failed (not sent, or sent "
        "without confirmation)")


def _error(command: str, message: str) -> None:
    from mic_pipeline.text import printable

    print(printable(f"mic-pipeline {command}: error: {message}"), file=sys.stderr)


def _readable(command: str, path: Path) -> bool:
    if not path.is_file():
        _error(command, f"cannot read {path}: " + ("no such file" if not path.exists() else "not a file"))
        return False
    return True


def _describe(path: Path, verdict: LineVerdict) -> str:
    """One line per invalid input line; escaped, the detail can quote the line's text."""
    from mic_pipeline.text import printable

    return printable(f"{path}:{verdict.line}: {verdict.reason}: {verdict.detail}")


def validate_command(args: argparse.Namespace) -> int:
    """`mic-pipeline validate FILE.jsonl [--json]`."""
    from producers.jsonl import check_file

    path: Path = args.file
    if not _readable("validate", path):
        return EXIT_USAGE
    total = bad = 0
    out = sys.stdout
    try:
        for verdict in check_file(path):
            total += 1
            bad += not verdict.ok
            if args.json:
                out.write(json.dumps(verdict.as_json()) + "\n")
            elif not verdict.ok:
                out.write(_describe(path, verdict) + "\n")
    except OSError as exc:
        _error("validate", f"cannot read {path}: {exc}")
        return EXIT_USAGE
    if not args.json:
        print(f"{path}: {total} lines, {total - bad} valid, {bad} invalid")
    return EXIT_OK if bad == 0 else EXIT_INVALID


def _open_report(command: str, path: Path | None, tag: str) -> DeliveryReport | None:
    """The delivery report asked for (`OSError` when it cannot be written)."""
    from producers.delivery_report import DeliveryReport

    return None if path is None else DeliveryReport(path, tag)


def _not_acknowledged(command: str, publisher: EventPublisher, report: DeliveryReport | None) -> None:
    """The summary of a run in which some records were not acknowledged."""
    handed, acknowledged = publisher.sent, publisher.delivered
    listed = f"; each record's outcome is in {report.path}" if report is not None else ""
    _error(command, f"{handed} records handed to the producer: {acknowledged} acknowledged, "
           f"{handed - acknowledged} NOT acknowledged (failed: not sent, or sent without "
           f"confirmation){listed}")


def _open_publisher(
    command: str, timeout_s: float, topics: list[str], report: DeliveryReport | None = None
) -> EventPublisher | None:
    from mic_pipeline.config import Settings
    from producers.publisher import EventPublisher, PublishError, missing_topics

    settings = Settings.from_env()
    try:
        missing = missing_topics(settings, topics, timeout_s=timeout_s)
        if missing:
            user = settings.kafka_security.sasl_username
            grant = f", or allow user {user!r} to write them (ACL)" if user else ""
            _error(command, f"topics missing on {settings.kafka_bootstrap}: {', '.join(missing)} "
                   f"(create them with `mic-pipeline topics create`{grant})")
            return None
        return EventPublisher(settings, timeout_s=timeout_s, on_delivery=report)
    except PublishError as exc:
        _error(command, str(exc))
        return None


def publish_command(args: argparse.Namespace) -> int:
    """`mic-pipeline publish FILE.jsonl [--strict] [--raw --topic T]`."""
    from producers.jsonl import check_file, read_lines
    from producers.publisher import PublishError
    from schemas.topics import Family

    path: Path = args.file
    if args.raw != (args.topic is not None) or (args.raw and args.strict):
        _error("publish", "--raw needs --topic (and only it), and --strict does not apply to --raw")
        return EXIT_USAGE
    if not _readable("publish", path):
        return EXIT_USAGE
    if args.strict:
        try:
            invalid = [v for v in check_file(path) if not v.ok]
        except OSError as exc:
            _error("publish", f"cannot read {path}: {exc}")
            return EXIT_USAGE
        for verdict in invalid:
            print(_describe(path, verdict), file=sys.stderr)
        if invalid:
            print(f"{path}: {len(invalid)} invalid lines; nothing published (--strict)")
            return EXIT_INVALID
    topics = [args.topic] if args.raw else [family.topic for family in Family]
    try:
        report = _open_report("publish", args.delivery_report, "line")
    except OSError as exc:
        _error("publish", f"cannot write {args.delivery_report}: {exc}")
        return EXIT_USAGE
    publisher = _open_publisher("publish", args.timeout, topics, report)
    if publisher is None:
        if report is not None:
            report.finish()
        return EXIT_KAFKA
    published = invalid_count = 0
    failure: str | None = None
    try:
        with publisher:
            if args.raw:
                for number, raw in read_lines(path):
                    if report is not None:
                        report.handed(number, publisher.topic(args.topic))
                    publisher.publish_raw(args.topic, _readable_key(raw), raw, tag=number)
                    published += 1
            else:
                for verdict in check_file(path):
                    if verdict.event is None:
                        invalid_count += 1
                        print(_describe(path, verdict), file=sys.stderr)
                        continue
                    if report is not None:
                        report.handed(verdict.line, publisher.topic(verdict.event.family.topic))
                    publisher.publish_encoded(verdict.raw, tag=verdict.line)
                    published += 1
    except PublishError as exc:
        failure = f"{exc} (after {published} records handed to the producer)"
    except OSError as exc:
        _error("publish", f"cannot read {path}: {exc}")
        return EXIT_USAGE
    finally:
        if report is not None:
            report.finish()
    if failure is not None or publisher.delivered < publisher.sent:
        if failure is not None:
            _error("publish", failure)
        _not_acknowledged("publish", publisher, report)
        return EXIT_KAFKA
    print(f"{path}: published {published}, invalid {invalid_count}")
    return EXIT_OK if invalid_count == 0 else EXIT_INVALID


def _readable_key(raw: bytes) -> bytes | None:
    """The `company_id` of a raw line when it is a JSON object with a string `company_id`."""
    import orjson

    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    company_id = document.get("company_id") if isinstance(document, dict) else None
    return company_id.encode() if isinstance(company_id, str) else None


def simulate_command(args: argparse.Namespace) -> int:
    """`mic-pipeline simulate --rate N --duration S --seed X [...]`."""
    from producers.ground_truth import GroundTruthWriter
    from producers.pacing import RunSummary, run_paced
    from producers.publisher import PublishError
    from producers.simulator import SimRecord, SimulationConfig, generate
    from schemas.topics import Family

    try:
        config = SimulationConfig(seed=args.seed, scale=args.scale, invalid_fraction=args.invalid_fraction,
                                  duplicate_fraction=args.duplicate_fraction, clock_step_s=args.clock_step)
        if args.rate < 0 or args.duration <= 0:
            raise ValueError("--rate must be >= 0 and --duration positive")
    except ValueError as exc:
        _error("simulate", str(exc))
        return EXIT_USAGE
    try:
        report = _open_report("simulate", args.delivery_report, "seq")
    except OSError as exc:
        _error("simulate", f"cannot write {args.delivery_report}: {exc}")
        return EXIT_USAGE
    publisher = _open_publisher("simulate", args.timeout, [family.topic for family in Family], report)
    if publisher is None:
        if report is not None:
            report.finish()
        return EXIT_KAFKA
    writer = GroundTruthWriter(args.ground_truth) if args.ground_truth else None

    def send(record: SimRecord) -> None:
        truth = record.truth
        if report is not None:
            report.handed(truth.seq, publisher.topic(truth.topic))
        publisher.publish_raw(truth.topic, record.key, record.value, tag=truth.seq)
        if writer is not None:
            writer.write(truth)

    def progress(summary: RunSummary) -> None:
        print(f"simulate: {summary.progress_line()}", file=sys.stderr, flush=True)
        publisher.raise_if_failed()

    def warn(message: str) -> None:
        print(f"simulate: {message}", file=sys.stderr, flush=True)

    records = generate(config)
    started = time.monotonic()
    try:
        with publisher:
            summary = run_paced(records, send, rate=args.rate, duration_s=args.duration,
                                progress=progress, warn=warn)
    except PublishError as exc:
        _error("simulate", f"{exc}; stopped sending")
        _not_acknowledged("simulate", publisher, report)
        return EXIT_KAFKA
    finally:
        if writer is not None:
            writer.close()
        if report is not None:
            report.finish()
    if publisher.delivered < publisher.sent:  # unreachable unless a failure escaped the flush
        _not_acknowledged("simulate", publisher, report)
        return EXIT_KAFKA
    print(summary.report())
    print(f"all {publisher.delivered} records acknowledged by the broker {time.monotonic() - started:.2f}s "
          "after the start")
    if writer is not None:
        print(f"ground truth: {writer.count} records in {writer.path}")
    return EXIT_OK
