"""`mic-pipeline streams` as a user runs it: an unreachable broker is one line and exit 3."""

from __future__ import annotations

import os
import subprocess
import sys


def test_an_unreachable_broker_is_one_clear_line_and_exit_3(tmp_path: object) -> None:
    env = {**os.environ, "MIC_KAFKA_BOOTSTRAP": "127.0.0.1:1", "MIC_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", "streams"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("mic-pipeline streams: Kafka at 127.0.0.1:1: KafkaTimeoutError: ")
