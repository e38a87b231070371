"""The operators' web page in a real headless Chromium (Debian's chromium + chromedriver, via selenium).

A known run: one consumer group 6 records behind on an enriched topic, two dead letters, and a stand-in
for the stream's aggregates endpoint (a local HTTP server serving a document of the stream's shape).
The page must show those numbers, then follow when the group catches up and the aggregates change.
"""

from __future__ import annotations

import copy
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import TopicPartition
from ops_support import commit, dead_letter, delete_groups, produce

from mic_pipeline.config import Settings
from mic_pipeline.ops.verdict import Thresholds
from mic_pipeline.ops.web import make_server
from schemas.topics import DEADLETTER_TOPIC, Family

pytestmark = pytest.mark.kafka

CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,2000",
)

AGGREGATES: dict[str, Any] = {
    "members": {
        "active_total": 3,
        "by_region": {"50": 1, "77": 2},
        "by_status": {"participant": 3},
        "by_sector": {"it": 2, "pharma": 1},
        "by_size": {"large": 1, "small": 2},
        "sme_share": 0.6667,
        "by_state_corporation": {"none": 3},
    },
    "orders": {
        "per_day": {
            "2026-01-01": {
                "metal_processing": {
                    "placed": 2,
                    "accepted": 1,
                    "completed": 1,
                    "cancelled": 0,
                    "completed_amount_rub": "1500.00",
                }
            }
        },
        "deals_total": 1,
        "accepted_total": 1,
        "accepted_outside_moscow": 0,
        "accepted_outside_moscow_share": 0.0,
    },
    "patents": {"per_day": {}},
    "factoring": {"per_day": {}, "outstanding_rub": "0.00"},
    "quality": {"dead_letters": {"malformed": 2}, "duplicates_dropped": 5},
}


class AggregatesStandIn:
    """Serves a mutable aggregates document at `/aggregates`, as the stream's web view does."""

    def __init__(self) -> None:
        self.document = copy.deepcopy(AGGREGATES)
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = orjson.dumps(stand_in.document)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/aggregates"


def chromedriver_path() -> str:
    path = shutil.which("chromedriver")
    if path is None or shutil.which("chromium") is None:
        message = "chromium/chromedriver not installed (scripts/install_browser.sh)"
        if os.environ.get("MIC_REQUIRE_INFRA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.binary_location = shutil.which("chromium") or "chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver_path()), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def text_becomes(driver: Any, element_id: str, expected: str, timeout_s: float = 15.0) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def matches(d: Any) -> bool:
        return bool(d.find_element(By.ID, element_id).text == expected)

    try:
        WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(matches)
    except Exception as error:
        actual = driver.find_element(By.ID, element_id).text
        raise AssertionError(f"#{element_id} shows {actual!r}, expected {expected!r}") from error


def test_page_shows_a_known_run_and_follows_it(
    pipeline_topics: Settings, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    settings = pipeline_topics
    enriched = settings.topic(Family.ORDER.enriched_topic)
    group = f"{settings.topic_prefix}sink-sql"
    produce(settings, enriched, [b"row"] * 10, partition=1)
    commit(settings, group, {TopicPartition(enriched, 1): 4})
    produce(
        settings,
        settings.topic(DEADLETTER_TOPIC),
        [
            dead_letter(settings, reason="malformed", original_topic="mic.orders", original_value=b"{"),
            dead_letter(
                settings, reason="unknown_company", original_topic="mic.orders", original_value=b"{}"
            ),
        ],
    )
    stand_in = AggregatesStandIn()
    server = make_server(
        settings,
        thresholds=Thresholds(max_lag_records=5),
        streams_url=stand_in.url,
        port=0,
        refresh_ms=500,
        status_ttl_s=0.2,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            page = response.read().decode()
        assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in page

        browser.get(url)
        text_becomes(browser, "verdict", "DEGRADED")
        assert browser.find_element(By.ID, "lag-total").text == "6"
        assert browser.find_element(By.ID, "deadletters-total").text == "2"
        reasons = browser.find_element(By.ID, "reasons").text
        assert f"group {group}: lag 6 records (> 5)" in reasons
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-group="{group}"][data-partition="1"]')
        assert row.find_element(By.CSS_SELECTOR, "td.lag").text == "6"
        bars = browser.find_elements(By.CSS_SELECTOR, "#chart-deadletters g[data-label]")
        assert {(b.get_attribute("data-label"), b.get_attribute("data-value")) for b in bars} == {
            ("malformed", "1"),
            ("unknown_company", "1"),
        }
        text_becomes(browser, "agg-active-members", "3")
        assert browser.find_element(By.ID, "agg-duplicates").text == "5"
        regions = browser.find_elements(By.CSS_SELECTOR, "#chart-members-region g[data-label]")
        assert {(b.get_attribute("data-label"), b.get_attribute("data-value")) for b in regions} == {
            ("77", "2"),
            ("50", "1"),
        }
        browser.save_screenshot(str(tmp_path / "degraded.png"))

        commit(settings, group, {TopicPartition(enriched, 1): 10})
        stand_in.document["members"]["active_total"] = 4
        stand_in.document["members"]["by_region"]["78"] = 1
        text_becomes(browser, "verdict", "OK")
        assert browser.find_element(By.ID, "lag-total").text == "0"
        assert browser.find_element(By.ID, "reasons").text == ""
        text_becomes(browser, "agg-active-members", "4")
        lag_line = browser.find_element(By.CSS_SELECTOR, f'#chart-lag g[data-series="{group}"]')
        assert lag_line.get_attribute("data-last") == "0"
        assert browser.find_element(By.ID, "aggregates-error").get_attribute("hidden") is not None

        stand_in.server.shutdown()
        stand_in.server.server_close()
        text_becomes(
            browser,
            "aggregates-error",
            f"stream aggregates unavailable at {stand_in.url}: [Errno 111] Connection refused",
        )
        browser.save_screenshot(str(tmp_path / "ok.png"))
        severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        unexpected = [e for e in severe if "/api/aggregates" not in e["message"]]
        assert unexpected == []
    finally:
        server.shutdown()
        server.server_close()
        delete_groups(settings, [group])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_health_and_apis_when_broker_and_stream_are_down(settings: Settings) -> None:
    unreachable = Settings(
        kafka_bootstrap="127.0.0.1:1",
        warehouse_dir=settings.warehouse_dir,
        topic_prefix=settings.topic_prefix,
    )
    server = make_server(
        unreachable,
        thresholds=Thresholds(),
        streams_url="http://127.0.0.1:1/aggregates",
        port=0,
        kafka_timeout_ms=1000,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert get(base + "/health/live")[0] == 200
        status, body = get(base + "/api/status")
        document = orjson.loads(body)
        assert (status, document["verdict"]) == (200, "FAILING")
        assert document["reasons"][0].startswith("Kafka broker unreachable: 127.0.0.1:1")
        assert get(base + "/health/ready")[0] == 503
        status, body = get(base + "/api/aggregates")
        assert status == 502
        assert orjson.loads(body)["error"].startswith("stream aggregates unavailable at http://127.0.0.1:1/")
        assert get(base + "/nothing")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_page_shows_why_a_component_is_not_ready_as_text(
    pipeline_topics: Settings, browser: Any, tmp_path: Path
) -> None:
    """A sink's readiness reasons (which can quote event data) appear in the verdict's reasons and the
    components table as text: markup in them is shown, never parsed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from mic_pipeline import metrics
    from mic_pipeline.config import HealthEndpoint
    from mic_pipeline.health import Health

    attack = "write error: <img src=x onerror=alert(1)> \u202eevil"
    health = Health("sink-sql")
    health.problem("write", attack)
    sink = metrics.serve(0, health=health)
    nobody = HealthEndpoint("http://127.0.0.1:1/health/ready", "streams")
    server = make_server(
        pipeline_topics,
        thresholds=Thresholds(),
        health_endpoints=(HealthEndpoint(f"http://127.0.0.1:{sink.server_address[1]}/health/ready"), nobody),
        streams_url="http://127.0.0.1:1/aggregates",
        port=0,
        refresh_ms=500,
        status_ttl_s=0.2,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        text_becomes(browser, "verdict", "DEGRADED")

        def rows(driver: Any) -> dict[str, list[str]]:  # read in one go: the page redraws them
            shown: dict[str, list[str]] = driver.execute_script(
                "const out = {};"
                "for (const tr of document.querySelectorAll('#components-body tr[data-component]'))"
                "  out[tr.dataset.component] = [tr.dataset.status, ...[...tr.cells].map(c => c.textContent)];"
                "return out;"
            )
            return shown

        WebDriverWait(browser, 15, poll_frequency=0.2).until(lambda d: len(rows(d)) == 2)
        shown = rows(browser)
        assert shown["sink-sql"][:2] == ["not ready", "sink-sql"] and shown["sink-sql"][3] == attack
        assert shown["sink-sql"][2].startswith("not ready for ")
        assert shown["streams"][0] == "unknown"
        assert shown["streams"][3].startswith(f"health endpoint unreachable ({nobody.url}: ")
        reasons = browser.find_element(By.ID, "reasons").get_attribute("textContent")
        assert "sink-sql: not ready for " in reasons and attack in reasons
        assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
        browser.save_screenshot(str(tmp_path / "components.png"))
        health.clear("write")
        WebDriverWait(browser, 15, poll_frequency=0.2).until(lambda d: rows(d)["sink-sql"][0] == "ready")
    finally:
        server.shutdown()
        server.server_close()
        sink.shutdown()
        sink.server_close()
