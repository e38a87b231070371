"""The local broker: configuration (pure), jar cache, and one real start/status/stop cycle."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.infra.kafka_broker import BrokerPaths, log_tail, running_pid
from mic_pipeline.infra.kafka_config import (
    BrokerConfig,
    broker_config_from_bootstrap,
    new_cluster_id,
    render_server_properties,
)
from mic_pipeline.infra.kafka_dist import (
    KafkaFetchError,
    cached_distribution,
    distribution_dir,
    fetch_kafka,
    pom_digest,
)
from mic_pipeline.infra.kafka_status import TopicOffsets, format_offsets_table


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_bootstrap_parsing_takes_first_loopback_server_and_port_override() -> None:
    assert broker_config_from_bootstrap("127.0.0.1:9092") == BrokerConfig("127.0.0.1", 9092)
    assert broker_config_from_bootstrap("localhost:19092,localhost:19094") == BrokerConfig("127.0.0.1", 19092)
    assert broker_config_from_bootstrap("127.0.0.1:9092", 39092).port == 39092


@pytest.mark.parametrize(
    ("bootstrap", "message"),
    [
        ("kafka:9092", "loopback"),
        ("127.0.0.1", "host:port"),
        ("127.0.0.1:x", "integer"),
        (":9092", "host:port"),
    ],
)
def test_bootstrap_parsing_rejects_bad_values(bootstrap: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        broker_config_from_bootstrap(bootstrap)


def test_port_range_leaves_room_for_the_controller() -> None:
    assert BrokerConfig(port=29092).controller_port == 29093
    with pytest.raises(ValueError, match="port"):
        BrokerConfig(port=65535)


def test_server_properties_single_kraft_node(tmp_path: Path) -> None:
    props = _properties(render_server_properties(BrokerConfig(port=29092), tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        assert props[key] == "1"
    assert int(props["message.max.bytes"]) >= 10 * 1024 * 1024


def test_cluster_ids_are_kraft_shaped_and_random() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster_id) for cluster_id in ids)


def test_log_tail_skips_what_was_there_before_this_start(tmp_path: Path) -> None:
    paths = BrokerPaths(tmp_path)
    paths.logs.mkdir()
    paths.server_log.write_text("old line\n")
    before = {paths.server_log: paths.server_log.stat().st_size}
    with paths.server_log.open("a") as log:
        log.write("new line 1\nnew line 2\n")
    tail = log_tail(paths, since=before)
    assert "new line 1\nnew line 2" in tail
    assert "old line" not in tail
    assert "old line" in log_tail(paths)
    assert "no broker log lines" in log_tail(BrokerPaths(tmp_path / "none"))


def test_stale_pid_file_is_not_a_running_broker(tmp_path: Path) -> None:
    paths = BrokerPaths(tmp_path)
    paths.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Kafka broker
    assert running_pid(paths) is None
    assert not paths.pid_file.exists()


def _fake_maven(tmp_path: Path, *, fail: bool) -> tuple[Path, Path]:
    """An executable standing in for `mvn`: counts its calls, 'copies' one jar or fails."""
    calls = tmp_path / "calls"
    script = tmp_path / "mvn"
    body = (
        'echo "[ERROR] Could not resolve dependencies" ; exit 1'
        if fail
        else 'for arg; do case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac; done\n'
        'mkdir -p "$out" && touch "$out/kafka_2.13-4.1.1.jar"'
    )
    script.write_text(f'#!/bin/sh\necho call >> "{calls}"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, calls


def test_fetch_runs_maven_once_per_pom_and_stamps_the_result(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project>one</project>")
    mvn, calls = _fake_maven(tmp_path, fail=False)
    cache = tmp_path / "cache"
    assert cached_distribution(cache, pom) is None
    dist = fetch_kafka(cache, pom=pom, mvn=str(mvn))
    assert dist.root == distribution_dir(cache, pom) == cache / f"kafka-{pom_digest(pom)}"
    assert (dist.libs / "kafka_2.13-4.1.1.jar").is_file()
    assert dist.classpath == f"{dist.libs}/*"
    assert fetch_kafka(cache, pom=pom, mvn=str(mvn)) == dist
    assert calls.read_text().count("call") == 1
    pom.write_text("<project>two</project>")
    assert fetch_kafka(cache, pom=pom, mvn=str(mvn)).root != dist.root
    assert calls.read_text().count("call") == 2


def test_fetch_failure_reports_maven_output_and_caches_nothing(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    mvn, _ = _fake_maven(tmp_path, fail=True)
    with pytest.raises(KafkaFetchError, match="Could not resolve dependencies"):
        fetch_kafka(tmp_path / "cache", pom=pom, mvn=str(mvn))
    assert cached_distribution(tmp_path / "cache", pom) is None
    with pytest.raises(KafkaFetchError, match="not installed"):
        fetch_kafka(tmp_path / "cache", pom=pom, mvn=str(tmp_path / "no-such-mvn"))


def test_offsets_table_and_json() -> None:
    topics = [TopicOffsets("mic.orders", {1: 7, 0: 5}), TopicOffsets("mic.patents", {0: 0})]
    assert topics[0].total == 12
    assert topics[0].to_json() == {
        "name": "mic.orders",
        "partitions": 2,
        "total": 12,
        "end_offsets": {"0": 5, "1": 7},
    }
    lines = format_offsets_table(topics).splitlines()
    assert lines[0].split() == ["TOPIC", "PARTS", "END", "OFFSETS", "PER", "PARTITION"]
    assert lines[1].split() == ["mic.orders", "2", "12", "0:5", "1:7"]
    assert lines[2].split() == ["mic.patents", "1", "0", "0:0"]
    assert lines[3].split() == ["(all", "shown)", "3", "12"]
    assert format_offsets_table([]) == "(no topics)"


def _free_port_pair() -> int:
    """A port p such that p and p+1 are both free on loopback right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port >= 65534:
            continue
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_kafka_start_status_stop_cycle(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A second broker of our own: start, idempotent start, topics and offsets, clean stop."""
    from kafka import KafkaProducer

    port = _free_port_pair()
    bootstrap = f"127.0.0.1:{port}"
    env = {**os.environ, "MIC_STATE_DIR": str(tmp_path / "state"), "MIC_KAFKA_BOOTSTRAP": bootstrap}
    paths = BrokerPaths.in_state_dir(tmp_path / "state")

    started = _cli(env, "kafka", "start", "--timeout", "90")
    try:
        assert started.returncode == 0, started.stderr
        assert f"bootstrap {bootstrap}" in started.stdout
        pid = running_pid(paths)
        assert pid is not None
        assert (paths.data / "meta.properties").is_file()
        again = _cli(env, "kafka", "start")
        assert again.returncode == 0, again.stderr
        assert f"already running: pid {pid}" in again.stdout
        elsewhere = _cli(env, "kafka", "start", "--port", str(port + 2))
        assert elsewhere.returncode == 1
        assert "already running with another configuration" in elsewhere.stderr

        settings = Settings(kafka_bootstrap=bootstrap, topic_prefix="cycle.", partitions=2)
        created = _cli({**env, "MIC_TOPIC_PREFIX": "cycle.", "MIC_PARTITIONS": "2"}, "topics", "create")
        assert created.returncode == 0, created.stderr
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for number in range(25):
            producer.send(settings.topic("mic.orders"), key=b"k%d" % (number % 5), value=b"{}")
        producer.flush(timeout=30)
        producer.close()

        status = _cli(env, "kafka", "status", "--json", "--prefix", "cycle.")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["running"] is True and report["pid"] == pid and report["reachable"] is True
        totals = {topic["name"]: topic["total"] for topic in report["topics"]}
        assert len(totals) == 10
        assert totals["cycle.mic.orders"] == 25
        assert sum(totals.values()) == 25
        table = _cli(env, "kafka", "status", "--prefix", "cycle.mic.orders")
        assert re.search(r"^cycle\.mic\.orders\s+2\s+25\s", table.stdout, re.MULTILINE), table.stdout
    finally:
        stopped = _cli(env, "kafka", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "kafka stopped in" in stopped.stdout
    assert running_pid(paths) is None and not paths.pid_file.exists()
    assert not Path(f"/proc/{pid}").exists() or "kafka.Kafka" not in Path(f"/proc/{pid}/cmdline").read_text()
    log = paths.server_log.read_text()
    assert "Kafka Server started" in log
    assert "[BrokerServer id=1] Transition from SHUTTING_DOWN to SHUTDOWN" in log  # a controlled shutdown
    after = _cli(env, "kafka", "status", "--json")
    assert after.returncode == 1
    assert json.loads(after.stdout)["running"] is False
    assert _cli(env, "kafka", "stop").stdout.startswith("kafka was not running")
