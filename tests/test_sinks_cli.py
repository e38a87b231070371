"""`mic-pipeline sink` as a user runs it: an unreachable broker at start is one clear line and exit 3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_an_unreachable_broker_at_start_is_one_clear_line_and_exit_3(tmp_path: Path) -> None:
    env = {**os.environ, "MIC_KAFKA_BOOTSTRAP": "127.0.0.1:1", "MIC_WAREHOUSE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", "sink", "parquet", "--no-gate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mic-pipeline sink parquet: cannot reach Kafka at 127.0.0.1:1: ")
