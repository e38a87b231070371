"""Subcommands `kafka` and `topics` (filled in by the infrastructure work)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the infrastructure subcommands."""
