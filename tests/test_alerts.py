"""The Prometheus alert rules and the Grafana dashboard (ops/), checked against the code.

- `promtool check config` (with the rules) and `promtool test rules ops/prometheus/alerts_test.yml`
  (Debian's `prometheus` package; scripts/test.sh installs it): the rules parse and each alert fires
  on the series that should raise it, and not on a healthy batching consumer;
- every `mic_*` metric an alert or a dashboard panel names is one the code exports (the names
  are read from the metric objects the code registers, not grepped), so renaming a metric fails
  here; a doctored panel naming a metric that does not exist is caught;
- the provisioning fits docker-compose.yml: the dashboard's data source is the provisioned one, the
  files are mounted where Grafana and Prometheus look, every scrape target is a service's port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "ops" / "prometheus"
GRAFANA = ROOT / "ops" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "mic-pipeline.json"
_METRIC = re.compile(r"\bmic_[a-z0-9_]+\b")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not installed (Debian's prometheus package; scripts/test.sh installs it)"
        if os.environ.get("MIC_REQUIRE_INFRA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def exported_metrics() -> set[str]:
    """Every series name the code's metrics can produce (counters `_total`, histograms `_bucket`...)."""
    from prometheus_client import REGISTRY

    import mic_pipeline.metrics
    import mic_pipeline.ops.ops_metrics  # noqa: F401 (the web page's status gauges)

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("mic_"):
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def unknown_metrics(expressions: list[tuple[str, str]], exported: set[str]) -> list[str]:
    """`where: metric` for each `mic_*` name an expression uses that the code does not export."""
    return [
        f"{where}: {name}"
        for where, expression in expressions
        for name in sorted(set(_METRIC.findall(expression)))
        if name not in exported
    ]


def alert_expressions() -> list[tuple[str, str]]:
    rules = YAML(typ="safe").load((PROMETHEUS / "alerts.yml").read_text())
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def test_promtool_checks_the_config_and_rules_and_the_rules_unit_tests_pass() -> None:
    tool = promtool()
    command = [tool, "check", "config", str(PROMETHEUS / "prometheus.yml")]
    checked = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text((PROMETHEUS / "alerts.yml").read_text().replace("> 900", "> > 900", 1))
    command = [promtool(), "check", "rules", str(broken)]
    checked = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert checked.returncode != 0


def test_every_metric_the_alerts_and_panels_name_is_exported_by_the_code() -> None:
    exported = exported_metrics()
    assert {"mic_events_in_total", "mic_batch_write_seconds_bucket", "mic_consumer_lag_seconds"} <= exported
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = dashboard_expressions(dashboard)
    assert len(expressions) >= len(dashboard["panels"]) >= 15
    assert unknown_metrics(expressions, exported) == []
    assert unknown_metrics(alert_expressions(), exported) == []
    named = expressions + alert_expressions()
    used = {name for _, expression in named for name in _METRIC.findall(expression)}
    families = {name.removesuffix("_total") for name in used}
    assert {
        "mic_dead_letters",
        "mic_quality_gate",
        "mic_consumer_lag_seconds",
        "mic_warehouse_waiting_seconds",
        "mic_consumer_committed_offset",
    } <= families


def test_a_panel_naming_a_metric_that_no_longer_exists_is_caught() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    dashboard["panels"][0]["targets"][0]["expr"] = "sum(rate(mic_events_consumed_total[1m]))"
    assert unknown_metrics(dashboard_expressions(dashboard), exported_metrics()) == [
        f"{dashboard['panels'][0]['title']}: mic_events_consumed_total"
    ]


def test_the_provisioning_fits_docker_compose() -> None:
    compose = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    services, configs = compose["services"], compose["configs"]

    def mounted(service: str) -> dict[str, Path]:
        entries = services[service]["configs"]
        return {entry["target"]: ROOT / configs[entry["source"]]["file"] for entry in entries}

    grafana, prometheus = mounted("grafana"), mounted("prometheus")
    assert all(path.is_file() for path in [*grafana.values(), *prometheus.values()])
    assert prometheus["/etc/prometheus/prometheus.yml"] == PROMETHEUS / "prometheus.yml"
    assert prometheus["/etc/prometheus/alerts.yml"] == PROMETHEUS / "alerts.yml"
    provisioning = "/etc/grafana/provisioning"
    provider = YAML(typ="safe").load(grafana[f"{provisioning}/dashboards/mic.yml"].read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert grafana[f"{folder}/mic-pipeline.json"] == DASHBOARD
    source = YAML(typ="safe").load(grafana[f"{provisioning}/datasources/prometheus.yml"].read_text())
    uid = source["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    config = YAML(typ="safe").load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    ports = {
        "streams": services["streams"]["command"][services["streams"]["command"].index("--web-port") + 1],
        "sink-sql": services["sink-sql"]["command"][-1],
        "sink-parquet": services["sink-parquet"]["command"][-1],
        "web": services["web"]["command"][services["web"]["command"].index("--metrics-port") + 1],
    }
    assert targets == {f"{name}:{port}" for name, port in ports.items()}
