"""`status` and the web page report why a component is not ready: real HTTP servers serving a
`mic_pipeline.health.Health` (as every long-running component does), an endpoint nobody answers, the
endpoints from flags, `MIC_HEALTH_URLS`, a live `run`'s run file, and docker-compose's."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from ops_support import run_cli, use_settings
from ruamel.yaml import YAML

from mic_pipeline import metrics
from mic_pipeline.config import HealthEndpoint, Settings
from mic_pipeline.health import Health
from mic_pipeline.ops.components import (
    RunFileError,
    collect_components,
    fetch_health,
    read_run_file,
    remove_run_file,
    resolve_endpoints,
    write_run_file,
)
from mic_pipeline.ops.verdict import Thresholds

DISK_FULL = "disk full: [Errno 28] No space left on device"


class Clock:
    """A wall clock the test moves (epoch seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def parquet_sink() -> Iterator[tuple[Health, Clock, str]]:
    """A not-ready Parquet sink's health server: disk full since 42 s ago."""
    clock = Clock(time.time() - 42)
    health = Health("sink-parquet", clock=clock)
    health.problem("disk", DISK_FULL)
    clock.now = time.time()
    server = metrics.serve(0, health=health)
    try:
        yield health, clock, f"http://127.0.0.1:{server.server_address[1]}/health/ready"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sql_sink() -> Iterator[str]:
    """A ready SQL sink's health server."""
    health = Health("sink-sql")
    health.progress()
    server = metrics.serve(0, health=health)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health/ready"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_reads_readiness_reasons_and_names_from_the_answer(
    parquet_sink: tuple[Health, Clock, str], sql_sink: str
) -> None:
    _, _, url = parquet_sink
    nobody = f"http://127.0.0.1:{free_port()}/health/ready"
    parquet, sql, down = collect_components(
        [HealthEndpoint(url), HealthEndpoint(sql_sink, "sql"), HealthEndpoint(nobody, "sink-x")]
    )
    assert (parquet.name, parquet.ready, parquet.reasons, parquet.error) == (
        "sink-parquet", False, (DISK_FULL,), None
    )  # fmt: skip
    assert parquet.since is not None and 41 <= time.time() - parquet.since <= 60
    assert (sql.name, sql.ready, sql.error) == ("sql", True, None)
    assert sql.last_progress is not None
    assert (down.name, down.ready) == ("sink-x", False)
    assert down.error == f"health endpoint unreachable ({nobody}: [Errno 111] Connection refused)"


def test_an_answer_that_is_not_a_readiness_document_is_reported(sql_sink: str) -> None:
    missing = sql_sink.replace("/health/ready", "/nothing")
    answer = fetch_health(HealthEndpoint(missing, "streams"))
    assert (answer.ready, answer.error) == (False, f"health endpoint answered HTTP 404 ({missing})")


@pytest.mark.kafka
def test_status_names_the_not_ready_component_and_why_then_fails_after_the_threshold(
    pipeline_topics: Settings,
    parquet_sink: tuple[Health, Clock, str],
    sql_sink: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings(monkeypatch, pipeline_topics)
    health, _, url = parquet_sink
    nobody = f"http://127.0.0.1:{free_port()}/health/ready"
    flags = ["--health-url", url, "--health-url", f"sink-sql={sql_sink}", "--health-url", f"streams={nobody}"]
    code, out, _ = run_cli(capsys, "status", *flags)
    lines = out.splitlines()
    assert code == 1
    assert lines[0] == "verdict: DEGRADED"
    assert re.fullmatch(rf"  - sink-parquet: not ready for 4[2-9] s: {re.escape(DISK_FULL)}", lines[1])
    assert lines[2] == f"  - streams: health endpoint unreachable ({nobody}: [Errno 111] Connection refused)"
    components = lines[lines.index("components:") + 1 : lines.index("components:") + 4]
    assert components[0] == lines[1].replace("  - ", "  ", 1)
    assert re.fullmatch(r"  sink-sql: ready \(last progress \d s ago\)", components[1])

    code, out, _ = run_cli(capsys, "status", "--json", "--failing-not-ready-seconds", "30", *flags)
    document = orjson.loads(out)
    assert (code, document["verdict"]) == (2, "FAILING")
    assert re.fullmatch(
        rf"sink-parquet: not ready for 4[2-9] s \(> 30 s\): {re.escape(DISK_FULL)}", document["reasons"][0]
    )
    assert [(c["component"], c["status"]) for c in document["components"]] == [
        ("sink-parquet", "not ready"), ("sink-sql", "ready"), ("streams", "unknown")
    ]  # fmt: skip
    assert document["components"][0]["reasons"] == [DISK_FULL]

    health.progress()  # the disk has room again and a batch landed
    monkeypatch.setenv("MIC_HEALTH_URLS", f"{url},sink-sql={sql_sink}")
    code, out, _ = run_cli(capsys, "status", "--json")
    document = orjson.loads(out)
    assert (code, document["verdict"], document["reasons"]) == (0, "OK", [])
    assert [c["component"] for c in document["components"]] == ["sink-parquet", "sink-sql"]


@pytest.mark.kafka
def test_the_web_status_api_carries_the_components(
    pipeline_topics: Settings, parquet_sink: tuple[Health, Clock, str]
) -> None:
    from mic_pipeline.ops.web import make_server

    _, _, url = parquet_sink
    server = make_server(
        pipeline_topics,
        thresholds=Thresholds(),
        health_endpoints=(HealthEndpoint(url),),
        streams_url="http://127.0.0.1:1/aggregates",
        port=0,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=20) as response:
            document = json.loads(response.read())
    finally:
        server.shutdown()
        server.server_close()
    assert document["verdict"] == "DEGRADED"
    assert document["reasons"][0].startswith("sink-parquet: not ready for 4")
    assert document["reasons"][0].endswith(f" s: {DISK_FULL}")
    assert document["components"][0]["reasons"] == [DISK_FULL]


def test_endpoints_come_from_flags_then_the_environment_then_a_live_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = Settings(state_dir=state)
    assert resolve_endpoints(settings, None) == ()
    written = (HealthEndpoint("http://127.0.0.1:9101/health/ready", "sink-sql"),)
    path = write_run_file(state, written)
    assert path == state / "run.json"
    assert resolve_endpoints(settings, None) == written  # this process plays the live `run`
    from_env = Settings(state_dir=state, health_urls=(HealthEndpoint("http://e:1/health/ready"),))
    assert resolve_endpoints(from_env, None) == from_env.health_urls
    assert resolve_endpoints(from_env, ["x=http://f:2/health/ready"]) == (
        HealthEndpoint("http://f:2/health/ready", "x"),
    )
    with pytest.raises(ValueError, match="--health-url 'ftp://f': not an http"):
        resolve_endpoints(settings, ["ftp://f"])

    document = json.loads(path.read_text())
    document["pid"] = 2**22 + 17  # a run that has ended
    path.write_text(json.dumps(document))
    assert read_run_file(state) == ()
    remove_run_file(state)  # not ours any more: left alone
    assert path.exists()
    path.write_text("{not json")
    with pytest.raises(RunFileError, match="not a run file"):
        read_run_file(state)
    write_run_file(state, written)
    remove_run_file(state)
    assert not path.exists()


def test_docker_compose_watches_the_long_running_services() -> None:
    compose_file = Path(__file__).resolve().parent.parent / "docker-compose.yml"
    compose = YAML(typ="safe").load(compose_file.read_text())
    environment = {str(k): str(v) for k, v in compose["x-pipeline-env"].items()}
    settings = Settings.from_env(environment)
    assert [(e.name, e.url) for e in settings.health_urls] == [
        ("streams", "http://streams:6066/health"),
        ("sink-sql", "http://sink-sql:9101/health/ready"),
        ("sink-parquet", "http://sink-parquet:9102/health/ready"),
    ]
    services = compose["services"]
    assert services["sink-sql"]["command"][-1] == "9101" and services["sink-parquet"]["command"][-1] == "9102"
    assert environment["MIC_BIND_HOST"] == "0.0.0.0"
