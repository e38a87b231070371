"""The stream worker and its decision code before and after the throughput issue's steps, in one run.

Usage:
  python bench/bench_steps.py --compare LABEL=DIR [LABEL=DIR ...] [--records N] [--rounds R]
                              [--bootstrap HOST:PORT] [--out DIR]

Each DIR is a code tree of this project at some revision (`git worktree add --detach DIR REV`); the
first is the baseline. One simulator backlog (built by this checkout, as `mic-pipeline bench` builds
it: same seed, full population) is measured, on one broker and in one run, as:

- `faust`: the bare faust agent that only decodes (faust's own ceiling; `mic-pipeline bench`'s stage);
- `worker_1` of each tree: one `mic-pipeline streams` process of that tree (its directory is the
  process's working directory and PYTHONPATH) over the backlog, timed by its group's commits exactly
  as `mic-pipeline bench` times its own worker;
- `decision_code` of each tree: that tree's `streams.processor.EventProcessor` over plain dicts on the
  backlog in simulator order, in a subprocess (events per CPU second and per wall second), with the
  collector settings of that tree's worker (`gcpolicy` where the tree has one).

A round measures the faust ceiling, then every tree; the rounds alternate the trees' order. Each
figure is kept from every round, with its ratio to the faust ceiling of the same round and to the
baseline tree of the same round (figures on a shared 2-core machine are only compared within a run).
Trees decide with their own contract rules: a tree older than a contract clarification may accept
records that a later one dead-letters, so each tree's row and dead-letter counts are listed.
Writes `steps.json` and `steps.md` to `--out` (default `bench/results`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def decide(backlog_file: Path) -> dict[str, Any]:
    """The decision code of the tree on `sys.path` over the pickled records (`--decide` mode: imports
    only what every tree since the stream worker's first version has)."""
    import streams.processor
    from streams.processor import EventProcessor
    from streams.records import Position, SourceRecord
    from streams.replica import MemberReplica

    records: list[tuple[str, bytes | None, bytes]] = pickle.loads(backlog_file.read_bytes())
    processor = EventProcessor({}, {}, MemberReplica(), member_wait_s=0, dedupe_days=7)
    rows = letters = 0
    offsets: dict[str, int] = {}
    with _worker_gc():
        cpu, wall = time.process_time(), time.perf_counter()
        for topic, key, value in records:
            offset = offsets.get(topic, 0)
            offsets[topic] = offset + 1
            outcome = processor.process(
                SourceRecord(topic, 0, offset, key, value), Position(topic, 0, offset), waited_s=0.0
            )
            rows += len(outcome.enriched)
            letters += len(outcome.dead_letters)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    code = streams.processor.__file__
    return {
        "records": len(records),
        "rows": rows,
        "dead_letters": letters,
        "cpu_s": cpu,
        "wall_s": wall,
        "code": code,
    }


def _worker_gc() -> contextlib.AbstractContextManager[object]:
    """The tree's worker collector settings, where it has them (trees before them: Python's)."""
    for module in ("mic_pipeline.gcpolicy", "streams.gcpolicy"):
        try:
            policy = __import__(module, fromlist=["worker_gc"])
        except ImportError:
            continue
        manager: contextlib.AbstractContextManager[object] = policy.worker_gc()
        return manager
    return contextlib.nullcontext()


def decide_in(tree: Path, backlog_file: Path) -> dict[str, Any]:
    """`decide` of `tree` in a subprocess; raises with its output if it fails."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    argv = [sys.executable, str(Path(__file__).resolve()), "--decide", str(backlog_file)]
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the decision code of {tree} failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if not Path(result.pop("code")).resolve().is_relative_to(tree):
        raise RuntimeError(f"the decision code measured for {tree} was not that tree's")
    result["events_per_cpu_s"] = round(result["records"] / result["cpu_s"], 1)
    result["events_per_s"] = round(result["records"] / result["wall_s"], 1)
    return result


def measure(args: argparse.Namespace, trees: list[tuple[str, Path]]) -> dict[str, Any]:
    """Every round: the faust ceiling, then each tree's worker and decision code."""
    from mic_pipeline.bench.backlog import build_backlog, decide_offline
    from mic_pipeline.bench.context import Context, Options
    from mic_pipeline.bench.machine import load_average, machine_facts
    from mic_pipeline.bench.run import FULL_POPULATION, broker
    from mic_pipeline.bench.stages import peer_stage, worker_stage
    from mic_pipeline.config import Settings

    work = Path(tempfile.mkdtemp(prefix="mic-bench-steps-"))
    options = Options(
        records=args.records, quick=False, out=work, bootstrap=args.bootstrap, start_broker=False
    )
    rounds: list[dict[str, Any]] = []
    with broker(options, _log):
        load_start = load_average()
        backlog = build_backlog(
            options.records, seed=options.seed, scale=options.scale,
            invalid_fraction=options.invalid_fraction, clock_step_s=options.clock_step_s,
        )  # fmt: skip
        records_file = work / "backlog.pickle"
        records_file.write_bytes(pickle.dumps(backlog.records))
        base = dataclasses.replace(Settings.from_env(), kafka_bootstrap=args.bootstrap, topic_prefix="")
        enriched = decide_offline(backlog)
        for number in range(args.rounds):
            # each round in its own directory: a stage's result file must not be an earlier round's
            ctx = Context(
                options, base, os.urandom(3).hex(), work / f"round-{number + 1}", backlog, enriched, _log
            )
            order = trees if number % 2 == 0 else trees[::-1]
            _log(f"round {number + 1}: faust")
            measured: dict[str, Any] = {"faust": peer_stage(ctx, "faust")["events_per_s"], "trees": {}}
            for label, tree in order:
                _log(f"round {number + 1}: {label} ({tree})")
                decision = decide_in(tree, records_file)
                worker = worker_stage(ctx, 1, tree, f"_{_slug(label)}")
                measured["trees"][label] = {"decision_code": decision, "worker_1": _worker_figures(worker)}
            rounds.append(measured)
        facts = machine_facts(args.bootstrap)
        load_end = load_average()
    return {
        "machine": facts,
        "load_average": {"start": load_start, "end": load_end},
        "records": options.records,
        "population": FULL_POPULATION,
        "valid_events": backlog.valid_total,
        "trees": [{"label": label, "dir": str(tree), "revision": _revision(tree)} for label, tree in trees],
        "rounds": rounds,
    }


def _worker_figures(stage: dict[str, Any]) -> dict[str, Any]:
    process = stage["processes"][0]
    return {
        "events_per_s": stage["events_per_s"],
        "cpu_s": process.get("cpu_s"),
        "peak_rss_mib": process.get("peak_rss_mib"),
    }


def _slug(label: str) -> str:
    return "".join(char if char.isalnum() else "-" for char in label)


def _revision(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown (not a git tree)"


def markdown(document: dict[str, Any]) -> str:
    """The result as a table: per round and tree, figure, × faust ceiling, × baseline."""
    baseline = document["trees"][0]["label"]
    lines = [
        "# The stream worker before and after the throughput steps (`bench/bench_steps.py`)",
        "",
        f"{document['records']:,} simulator records ({document['valid_events']:,} valid), full population; "
        f"load average {document['load_average']['start']} at start, "
        f"{document['load_average']['end']} at end; "
        f"machine: {json.dumps(document['machine'], sort_keys=True)}",
        "",
        "| tree | revision |",
        "|---|---|",
        *[f"| {tree['label']} | `{tree['revision']}` |" for tree in document["trees"]],
        "",
        "| round | tree | worker events/s | × faust | × baseline | worker CPU s | decision code events/CPU s "
        "| × faust | × baseline | rows / dead letters |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, measured in enumerate(document["rounds"], 1):
        faust = measured["faust"]
        lines.append(f"| {number} | faust ceiling | {faust:,.0f} | 1.00 | | | | | | |")
        base = measured["trees"][baseline]
        for label, tree in measured["trees"].items():
            worker, decision = tree["worker_1"], tree["decision_code"]
            lines.append(
                f"| {number} | {label} | {worker['events_per_s']:,.0f} "
                f"| {worker['events_per_s'] / faust:.2f} "
                f"| {worker['events_per_s'] / base['worker_1']['events_per_s']:.2f} | {worker['cpu_s']} "
                f"| {decision['events_per_cpu_s']:,.0f} | {decision['events_per_cpu_s'] / faust:.2f} "
                f"| {decision['events_per_cpu_s'] / base['decision_code']['events_per_cpu_s']:.2f} "
                f"| {decision['rows']:,} / {decision['dead_letters']:,} |"
            )
    return "\n".join(lines) + "\n"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--compare", nargs="+", metavar="LABEL=DIR", help="code trees, baseline first")
    parser.add_argument("--decide", type=Path, help=argparse.SUPPRESS)  # the subprocess of one tree
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bootstrap", default=os.environ.get("MIC_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.decide is not None:
        print(json.dumps(decide(args.decide)))
        return 0
    if not args.compare:
        parser.error("--compare LABEL=DIR ... is required")
    trees = [(label, Path(path).resolve()) for label, path in (item.split("=", 1) for item in args.compare)]
    missing = [str(tree) for _, tree in trees if not (tree / "streams" / "processor.py").is_file()]
    if missing:
        parser.error(f"not a code tree of this project (no streams/processor.py): {', '.join(missing)}")
    document = measure(args, trees)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "steps.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / "steps.md").write_text(markdown(document))
    print(markdown(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
