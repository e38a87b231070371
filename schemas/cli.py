"""Subcommands of the `schemas` package: `mic-pipeline schemas export [--check] [--dir DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `schemas export`."""
    parser = subparsers.add_parser("schemas", help="JSON Schema documents of the event contract")
    actions = parser.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write the JSON Schema documents generated from the models",
        description="Write one JSON Schema document per event type and version, the envelope's and the "
        "dead letter's into DIR (default: schemas/jsonschema in the package). With --check, write "
        "nothing and exit 1 when the files there differ from what the models generate.",
    )
    export.add_argument("--check", action="store_true", help="only compare; exit 1 on drift")
    export.add_argument("--dir", type=Path, default=None, help="target directory")
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from schemas.export import DEFAULT_DIRECTORY, drift, export

    directory: Path = args.dir or DEFAULT_DIRECTORY
    if args.check:
        problems = drift(directory)
        for problem in problems:
            print(f"{directory}: {problem}", file=sys.stderr)
        if problems:
            print("JSON Schema files are out of date: run `mic-pipeline schemas export`", file=sys.stderr)
            return 1
        print(f"{directory}: up to date")
        return 0
    written = export(directory)
    print(f"wrote {len(written)} JSON Schema documents to {directory}")
    return 0
