"""`bench/bench_steps.py` without Kafka: a tree's decision code runs from that tree, and its table."""

from __future__ import annotations

import importlib.util
import pickle
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mic_pipeline.bench.backlog import build_backlog
from mic_pipeline.bench.procs import Children

ROOT = Path(__file__).resolve().parent.parent


def _bench_steps() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_steps", ROOT / "bench" / "bench_steps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_trees_decision_code_decides_every_record_from_that_tree(tmp_path: Path) -> None:
    steps = _bench_steps()
    backlog = build_backlog(800, seed=11, scale=0.05, invalid_fraction=0.05, clock_step_s=2)
    records = tmp_path / "backlog.pickle"
    records.write_bytes(pickle.dumps(backlog.records))
    tree = tmp_path / "tree"  # a copy: the measured code must be the tree's, not this checkout's
    for package in ("schemas", "streams", "mic_pipeline", "producers"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    result = steps.decide_in(tree, records)
    assert result["records"] == 800
    assert result["rows"] == backlog.valid_total
    assert result["dead_letters"] == sum(backlog.invalid.values())
    assert result["events_per_cpu_s"] > 0 and result["cpu_s"] > 0


def test_a_directory_without_the_code_is_refused(tmp_path: Path) -> None:
    steps = _bench_steps()
    records = tmp_path / "backlog.pickle"
    records.write_bytes(pickle.dumps([]))
    with pytest.raises(RuntimeError, match="was not that tree's"):
        steps.decide_in(tmp_path, records)  # imports this checkout's code: not what was asked
    with pytest.raises(SystemExit):
        steps.main(["--compare", f"empty={tmp_path}"])


def test_the_table_gives_each_tree_against_faust_and_the_baseline() -> None:
    def tree(worker: float, decision: float) -> dict[str, object]:
        return {
            "worker_1": {"events_per_s": worker, "cpu_s": 10.0, "peak_rss_mib": 200.0},
            "decision_code": {"events_per_cpu_s": decision, "rows": 9, "dead_letters": 1},
        }

    document = {
        "records": 10,
        "valid_events": 9,
        "load_average": {"start": [1.0], "end": [1.0]},
        "machine": {},
        "trees": [{"label": "old", "revision": "aaa"}, {"label": "new", "revision": "bbb"}],
        "rounds": [{"faust": 4000.0, "trees": {"new": tree(6000.0, 12000.0), "old": tree(400.0, 8000.0)}}],
    }
    table = _bench_steps().markdown(document)
    assert "| 1 | old | 400 | 0.10 | 1.00 | 10.0 | 8,000 | 2.00 | 1.00 | 9 / 1 |" in table
    assert "| 1 | new | 6,000 | 1.50 | 15.00 | 10.0 | 12,000 | 3.00 | 1.50 | 9 / 1 |" in table


def test_a_child_runs_in_the_directory_it_is_given(tmp_path: Path) -> None:
    with Children(tmp_path / "logs") as children:
        child = children.start("pwd", [sys.executable, "-c", "import os; print(os.getcwd())"], cwd=tmp_path)
        child.process.wait(timeout=60)
    assert child.log.read_text().strip() == str(tmp_path)
