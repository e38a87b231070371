"""The local 3-broker cluster's configuration, state directory and process helpers (no broker
started: the cluster itself runs in the fault stage, `tests/test_faults_*.py`)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.infra import cluster_cli
from mic_pipeline.infra.kafka_broker import BrokerError
from mic_pipeline.infra.kafka_cluster import ClusterPaths, _claim_layout, kill_node, start_node
from mic_pipeline.infra.kafka_config import BrokerConfig, ClusterConfig, render_server_properties
from mic_pipeline.infra.kafka_probe import not_ready_reason
from mic_pipeline.infra.processes import is_alive, terminate_all


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_cluster_nodes_take_two_ports_each_and_all_vote() -> None:
    config = ClusterConfig("127.0.0.1", 40000, 3)
    assert [config.node(i).port for i in config.node_ids] == [40000, 40002, 40004]
    assert [config.node(i).controller_port for i in config.node_ids] == [40001, 40003, 40005]
    assert config.voters == "1@127.0.0.1:40001,2@127.0.0.1:40003,3@127.0.0.1:40005"
    assert config.bootstrap == "127.0.0.1:40000,127.0.0.1:40002,127.0.0.1:40004"
    assert (config.replication, config.min_insync_replicas) == (3, 2)
    with pytest.raises(ValueError, match=r"1\.\.3"):
        config.node(4)


@pytest.mark.parametrize(
    ("brokers", "port", "message"), [(2, 9092, "1 or 3 brokers"), (3, 65531, "ports")]
)
def test_cluster_config_rejects_other_sizes_and_ports_past_the_range(
    brokers: int, port: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterConfig("127.0.0.1", port, brokers)


def test_a_cluster_node_replicates_three_times_two_in_sync_and_never_elects_unclean(tmp_path: Path) -> None:
    config = ClusterConfig("127.0.0.1", 40000, 3)
    props = _properties(render_server_properties(config.node(2), tmp_path / "data"))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == config.voters
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:40002,CONTROLLER://127.0.0.1:40003"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "3", key
    assert props["transaction.state.log.min.isr"] == "2"


def test_a_single_broker_keeps_kafkas_replication_defaults(tmp_path: Path) -> None:
    props = _properties(render_server_properties(BrokerConfig(port=29092), tmp_path / "data"))
    assert "default.replication.factor" not in props and "min.insync.replicas" not in props
    assert props["transaction.state.log.min.isr"] == "1"


def test_the_layout_is_recorded_once_and_another_layout_is_refused(tmp_path: Path) -> None:
    paths = ClusterPaths.in_state_dir(tmp_path)
    assert paths.layout() is None and paths.pids() == {}
    config = ClusterConfig("127.0.0.1", 40000, 3)
    cluster_id = _claim_layout(paths, config)
    assert paths.layout() == (config, cluster_id)
    assert json.loads(paths.layout_file.read_text())["brokers"] == 3
    assert _claim_layout(paths, config) == cluster_id  # a restart keeps the id its nodes were formatted with
    assert paths.pids() == {1: None, 2: None, 3: None}
    with pytest.raises(BrokerError, match="not 3 from port 41000"):
        _claim_layout(paths, ClusterConfig("127.0.0.1", 41000, 3))
    assert kill_node(paths, 2) is False  # not running


def test_a_state_directory_of_a_single_broker_is_not_made_a_cluster(tmp_path: Path) -> None:
    paths = ClusterPaths.in_state_dir(tmp_path)
    (paths.root / "data").mkdir(parents=True)
    (paths.root / "data" / "meta.properties").write_text("node.id=1\n")
    with pytest.raises(BrokerError, match="holds a single broker"):
        _claim_layout(paths, ClusterConfig())
    with pytest.raises(BrokerError, match="no cluster in"):
        start_node(None, paths, 1)  # type: ignore[arg-type]  # refused before the distribution is used


def test_start_chooses_the_cluster_when_asked_or_when_the_state_directory_holds_one(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    single = argparse.Namespace(brokers=None)
    assert not cluster_cli.wants_cluster(single, settings)
    assert cluster_cli.wants_cluster(argparse.Namespace(brokers=3), settings)
    _claim_layout(ClusterPaths.in_state_dir(tmp_path), ClusterConfig())
    assert cluster_cli.has_cluster(settings) and cluster_cli.wants_cluster(single, settings)


def test_kafka_start_offers_one_or_three_brokers_only(tmp_path: Path) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", "kafka", "start", "--brokers", "2"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"MIC_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert started.returncode == 2
    assert "invalid choice: 2" in started.stderr
    assert not (tmp_path / "kafka").exists()


def test_terminate_all_stops_the_polite_and_kills_only_the_deaf() -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
        "time.sleep(60)"
    )
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    deaf = subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE)
    assert deaf.stdout is not None and deaf.stdout.readline()  # its handler is installed
    try:
        killed = terminate_all([deaf.pid, polite.pid], timeout_s=1.0)
    finally:
        polite.wait(10)
        deaf.wait(10)
    assert killed == {deaf.pid}  # the polite one left on SIGTERM
    assert not is_alive(polite.pid) and not is_alive(deaf.pid)


@pytest.mark.kafka
def test_readiness_names_the_brokers_not_registered(kafka_bootstrap: str) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    assert not_ready_reason(settings, timeout_s=5.0, need_group_coordinator=False, brokers=[1]) is None
    reason = not_ready_reason(settings, timeout_s=5.0, need_group_coordinator=False, brokers=[1, 2, 3])
    assert reason == "broker(s) 2, 3 not registered unfenced yet"
