"""A small disk for the Parquet warehouse: a real tmpfs (when this process may mount one, i.e. as
root) that a test fills with a ballast file until writes fail with ENOSPC, then frees.

`tmpfs` mounts one and says why not when it cannot; `fill_up` writes the ballast; `small_disk` is
the single-process variant of the armour tests, with a fallback (every warehouse file write fails
with ENOSPC while the switch is on) for a process that may not mount.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHUNK = 65536


@dataclass(frozen=True)
class Mount:
    """The outcome of `tmpfs`: mounted, or the reason it is an ordinary directory."""

    directory: Path
    mounted: bool
    why_not: str = ""


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Mount]:
    """A tmpfs of `size` (mount's syntax: `4m`, `64m`) at `directory`, created (it must not exist)
    and unmounted at the end; when the mount is refused (not root, no mount in a container), the
    directory stays an ordinary one and `Mount.why_not` says why."""
    directory.mkdir(parents=True)
    if os.geteuid() != 0:
        yield Mount(directory, False, f"mounting a tmpfs needs root (euid {os.geteuid()})")
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        yield Mount(directory, False, f"mount -t tmpfs refused: {mounted.stderr.strip()}")
        return
    try:
        yield Mount(directory, True)
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True, capture_output=True)


def fill_up(ballast: Path) -> int:
    """Write `ballast` until its file system is full (ENOSPC); the bytes written. Any other error
    is raised."""
    written = 0
    with open(ballast, "wb", buffering=0) as handle:
        while True:
            try:
                count = handle.write(b"\0" * CHUNK)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written
            written += count or 0


@contextlib.contextmanager
def small_disk(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    """A 4 MiB tmpfs at `directory` when this process may mount one (root); else every file write of
    the Parquet warehouse fails with ENOSPC while the returned switch is on (the sink's real code
    path from `write_atomically` up). Yields a function `fill(on)` that fills or frees the disk."""
    with tmpfs(directory, "4m") as mount:
        if mount.mounted:
            filler = directory / "filler"

            def fill(on: bool) -> None:
                if on:
                    fill_up(filler)
                else:
                    filler.unlink()

            yield fill
            return
    import sinks.parquet.files as files

    full = threading.Event()
    real_open = open

    def limited_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if full.is_set() and "w" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", limited_open, raising=False)
    yield lambda on: full.set() if on else full.clear()
