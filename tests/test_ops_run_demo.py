"""`mic-pipeline demo --quick` end to end on the real broker and SQLite: it must reconcile, write the
report, and leave no topic, consumer group or process of its run behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from mic_pipeline.infra.processes import is_alive

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_quick_demo_reconciles_and_cleans_up(kafka_bootstrap: str, tmp_path: Path) -> None:
    environment = {**os.environ, "MIC_KAFKA_BOOTSTRAP": kafka_bootstrap}
    environment.pop("MIC_DATABASE_URL", None)
    command = [
        sys.executable,
        "-m",
        "mic_pipeline.cli",
        "demo",
        "--quick",
        "--dir",
        str(tmp_path),
        "--web-port",
        "0",
    ]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=150)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, "\n".join(output.splitlines()[-45:])
    assert "RECONCILED: " in output and "NOT RECONCILED" not in output
    match = re.search(
        r"events produced \(ground truth\): ([\d,]+) = ([\d,]+) valid \+ ([\d,]+) invalid", output
    )
    assert match, output
    produced, valid, invalid = (int(group.replace(",", "")) for group in match.groups())
    assert produced == sum(1 for _ in (tmp_path / "ground_truth.jsonl").open()) and produced > 2000
    assert invalid > 0 and valid > 0
    assert re.search(rf"total\s+{valid:,}\s+{valid:,}\s+{valid:,}", output), output
    assert (tmp_path / "report" / "index.html").is_file()
    with (tmp_path / "report" / "dead_letters_by_reason.csv").open() as file:
        assert sum(int(line.rsplit(",", 1)[1]) for line in list(file)[1:]) == invalid
    prefix = re.search(r"topic prefix (demo\d+\.)", output)
    assert prefix, output
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert not [t for t in admin.list_topics() if t.startswith(prefix.group(1))]
        assert not [g for g in admin.list_groups() if g["group_id"].startswith(prefix.group(1))]
    finally:
        admin.close()
    pids = [
        int(pid) for pid in re.findall(r"\(pid (\d+)\)", (tmp_path / "logs" / "pipeline.log").read_text())
    ]
    assert len(pids) == 4 and not any(is_alive(pid) for pid in pids)
