"""Helpers the operator subcommands share (arguments, endpoints, the broker-unreachable message)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mic_pipeline.text import printable

EXIT_KAFKA = 3


def kafka_errors() -> tuple[type[Exception], ...]:
    """What a broker that cannot be reached raises through kafka-python (socket errors are
    `OSError`); imported on use, kafka-python takes 0.3 s to import."""
    from kafka.errors import KafkaError

    return (KafkaError, OSError)


def add_health_urls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--health-url",
        action="append",
        dest="health_urls",
        metavar="[NAME=]URL",
        help="a component's /health/ready URL to include (repeatable; default: MIC_HEALTH_URLS, else "
        "the children of a `mic-pipeline run` using the same MIC_STATE_DIR)",
    )


def health_endpoints(settings: Any, args: argparse.Namespace) -> Any:
    """The readiness endpoints to watch; `ValueError` for a bad flag or an unreadable run file."""
    from mic_pipeline.ops.components import RunFileError, resolve_endpoints

    try:
        return resolve_endpoints(settings, args.health_urls)
    except RunFileError as error:
        raise ValueError(str(error)) from error


def broker_unreachable(command: str, settings: Any, error: BaseException) -> int:
    from mic_pipeline.kafka_clients import security_problem

    problem = security_problem(error, settings)
    where = f"broker unreachable at {settings.kafka_bootstrap}: {error}"
    print(printable(f"{command}: {where if problem is None else problem}"), file=sys.stderr)
    return EXIT_KAFKA
