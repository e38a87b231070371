"""Durable file writes of the Parquet warehouse: temporary file, fsync, rename, fsync the directory.

A write that fails (disk full, directory not writable) removes its temporary file before the error
propagates, so a full disk leaves no `.tmp` files behind and the next attempt starts clean.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through a hidden temporary file in the same directory, fsync, rename.

    Readers see the old file or the complete new one, never a part; on any failure the temporary
    file is removed and the error raised.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    """Delete `path` (if present) and make the deletion durable."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        fsync_dir(path.parent)
