"""The peers' processes: `python -m mic_pipeline.bench.peer aiokafka|faust|quix [options]`.

Each peer consumes the stage's four input topics from the start in a fresh consumer group, handles
`--expect` records, and writes one JSON result to `--out` (atomically): records, seconds from the
first record handled to the last one done, events/s, its own peak RSS (`VmHWM`) and CPU time, and
details of the job. The bench starts it as a child and reads the result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.topics import Family


@dataclass(frozen=True)
class PeerArgs:
    """What a peer is told by the bench."""

    bootstrap: str
    prefix: str
    group: str
    expect: int
    partitions: int
    work: Path
    out: Path

    @property
    def inputs(self) -> list[str]:
        """The stage's physical input topics."""
        return [f"{self.prefix}{family.topic}" for family in Family]

    def logical(self, topic: str) -> str:
        """The logical name of a physical topic of the stage."""
        return topic[len(self.prefix) :] if topic.startswith(self.prefix) else topic


def own_usage() -> dict[str, float]:
    """This process's peak RSS (MiB, `VmHWM`) and CPU seconds so far."""
    from mic_pipeline.bench.procs import peak_rss_kib

    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = peak_rss_kib(os.getpid()) or usage.ru_maxrss
    return {"peak_rss_mib": round(peak / 1024, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def write_result(args: PeerArgs, records: int, seconds: float, **details: Any) -> None:
    """Write the peer's result document to `args.out` (via a temporary file and a rename)."""
    if records <= 0 or seconds <= 0:
        raise ValueError(f"nothing measured: {records} records in {seconds} s")
    document = {
        "records": records,
        "seconds": round(seconds, 3),
        "events_per_s": round(records / seconds, 1),
        **own_usage(),
        **details,
    }
    partial = args.out.with_suffix(".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(args.out)


def _runner(kind: str) -> Callable[[PeerArgs], None]:
    if kind == "aiokafka":
        from mic_pipeline.bench.peer_aiokafka import run as run_aiokafka

        return run_aiokafka
    if kind == "faust":
        from mic_pipeline.bench.peer_faust import run as run_faust

        return run_faust
    from mic_pipeline.bench.peer_quix import run as run_quix

    return run_quix


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mic_pipeline.bench.peer", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("aiokafka", "faust", "quix"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True, help="the stage's topic prefix")
    parser.add_argument("--group", required=True, help="consumer group (fresh)")
    parser.add_argument("--expect", type=int, required=True, help="records on the input topics")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--work", type=Path, required=True, help="directory for state and data")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    ns = parser.parse_args(argv)
    args = PeerArgs(ns.bootstrap, ns.prefix, ns.group, ns.expect, ns.partitions, ns.work, ns.out)
    args.work.mkdir(parents=True, exist_ok=True)
    _runner(ns.kind)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
