"""Where the stream worker's time goes: py-spy samples of `mic-pipeline streams` deciding a backlog.

Usage: python bench/profile_worker.py [--records N] [--seconds S]

Runs `mic-pipeline bench --stages worker_1 --records N` (the broker of `MIC_KAFKA_BOOTSTRAP`, else
the dev broker; see bench/README.md), attaches `py-spy record` (on PATH or beside this Python) to
the worker process as soon as it exists, for S seconds at 200 Hz, folds the
samples by function (inclusive: the share of samples with the function anywhere on the stack; self:
at the top) and writes `bench/results/worker_profile.md`, with the bench figure and the load.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "worker_profile.md"


def _worker_pid(deadline_s: float) -> int:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", "mic_pipeline.cli streams"], capture_output=True, text=True)
        pids = [int(p) for p in found.stdout.split()]
        if pids:
            return min(pids)
        time.sleep(0.2)
    raise SystemExit("profile_worker: the bench started no stream worker in time")


def _name(frame: str) -> str:
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else function or "(native/idle)"


def fold(raw: Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """Samples in all, inclusive and self counts per function of a py-spy `--format raw` file."""
    total, inclusive, own = 0, collections.Counter[str](), collections.Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        names = [_name(frame) for frame in stack.split(";")]
        total += n
        own[names[-1]] += n
        inclusive.update(dict.fromkeys(set(names), n))
    return total, inclusive, own


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    work = Path(tempfile.mkdtemp(prefix="mic-profile-"))
    load_before = os.getloadavg()
    bench = subprocess.Popen(
        [sys.executable, "-m", "mic_pipeline.cli", "bench", "--stages", "worker_1",
         "--records", str(args.records), "--out", str(work)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    raw = work / "worker.raw"
    pid = _worker_pid(300.0)
    subprocess.run(
        [spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds)), "--rate", "200",
         "--format", "raw", "--nonblocking", "-o", str(raw)],
        check=True, capture_output=True,
    )  # fmt: skip
    output, _ = bench.communicate(timeout=900)
    figure = next((line for line in output.splitlines() if "stage worker_1:" in line), "(no figure)")
    total, inclusive, own = fold(raw)
    lines = [
        "# Stream worker profile (py-spy)",
        "",
        f"{datetime.now(UTC).isoformat(timespec='seconds')}; `python bench/profile_worker.py --records "
        f"{args.records}`; load average {load_before} before, {os.getloadavg()} after (2 shared cores).",
        f"Bench: `{figure.strip()}`; {total} samples at 200 Hz from the worker's start (start-up and "
        "recovery included, idle waits in the event loop show as native/idle).",
        "",
        "| inclusive % | function |",
        "|---|---|",
        *(f"| {100 * n / total:.1f} | `{name}` |" for name, n in inclusive.most_common(40)),
        "",
        "| self % | function |",
        "|---|---|",
        *(f"| {100 * n / total:.1f} | `{name}` |" for name, n in own.most_common(25)),
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
