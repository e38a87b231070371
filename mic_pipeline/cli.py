"""The `mic-pipeline` command: one entry point, subcommands registered by each package.

Each package owns a `cli.py` with `register(subparsers)`; handlers take the parsed arguments and
return the exit code. Heavy libraries (faust, Great Expectations, pyarrow) are imported inside the
handlers, never at registration, so `mic-pipeline --help` and `validate` start fast.

A configuration variable the process cannot use (`mic_pipeline.config.ConfigError`, raised by the
`from_env` readers every subcommand goes through) ends any subcommand with one line on stderr,
`mic-pipeline: configuration error: MIC_X='value': what is wrong`, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mic_pipeline.bench import cli as bench_cli
from mic_pipeline.config import ConfigError
from mic_pipeline.infra import cli as infra_cli
from mic_pipeline.ops import cli as ops_cli
from producers import cli as producers_cli
from schemas import cli as schemas_cli
from sinks import cli as sinks_cli
from streams import cli as streams_cli

EXIT_CONFIGURATION = 2

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

REGISTRARS: tuple[Registrar, ...] = (
    infra_cli.register,
    schemas_cli.register,
    producers_cli.register,
    streams_cli.register,
    sinks_cli.register,
    ops_cli.register,
    bench_cli.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every package's subcommands."""
    parser = argparse.ArgumentParser(
        prog="mic-pipeline",
        description="MIC platform event pipeline: Kafka, stream processing, warehouse sinks.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns (and exits with) its exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        print(f"mic-pipeline: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
