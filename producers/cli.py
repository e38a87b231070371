"""Subcommands of the `producers` package (to be filled in)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's subcommands."""
