"""`mic-pipeline bench --quick` as a smoke test of the harness: every stage measured, results written.

No speed assertion anywhere: a figure only has to exist and be positive (speed targets live in the
bench's results, compared within one run, never in tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mic_pipeline.bench.names import ALL_STAGES

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.bench]


@pytest.mark.timeout(900)
def test_quick_bench_measures_every_stage(kafka_bootstrap: str, postgres_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {
        **os.environ,
        "MIC_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MIC_TEST_POSTGRES_URL": postgres_url,
        "MIC_STATE_DIR": str(tmp_path / "state"),
    }
    command = [
        sys.executable,
        "-m",
        "mic_pipeline.cli",
        "bench",
        "--quick",
        "--no-start-broker",
        "--out",
        str(out),
    ]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=840, check=False)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]

    document = json.loads((out / "pipeline.json").read_text())
    stages = document["stages"]
    for name in ALL_STAGES:
        stage = stages[name]
        rate = stage.get("events_per_s", stage.get("rows_per_s"))
        assert rate is not None and rate > 0, (name, stage)
        assert stage["processes"], name
        assert all(p["peak_rss_mib"] > 0 for p in stage["processes"]), (name, stage["processes"])
    assert len(stages["worker_2"]["processes"]) == 2
    assert stages["decision_code"]["events_per_s"] > 0

    offered = [run["offered_per_s"] for run in document["latency"]]
    assert offered == [500.0, 2000.0]  # --quick: the fixed rates, no ramp
    for run in document["latency"]:
        assert run["landed"] == run["valid_events"] > 0, run
        assert 0 < run["p50_s"] <= run["p99_s"], run

    rows = {row["stage"]: row for row in document["figures"]}
    for name in ALL_STAGES:
        assert rows[name]["x_faust"] > 0 and rows[name]["x_quix"] > 0, rows[name]
    assert rows["faust"]["x_faust"] == 1.0 and rows["quix"]["x_quix"] == 1.0

    machine = document["machine"]
    assert machine["cores"] > 0 and machine["cpu_model"] and machine["git_commit"]
    for library in ("python", "faust-streaming", "aiokafka", "kafka-python", "quixstreams"):
        assert machine["versions"][library] != "not installed", library
    assert len(document["load_average"]["start"]) == len(document["load_average"]["end"]) == 3

    table = (out / "pipeline.md").read_text()
    for name in (*ALL_STAGES, "decision_code", "worker_rss", "latency_500", "latency_2000", "latency_max"):
        assert f"\n| {name} | " in table, name
