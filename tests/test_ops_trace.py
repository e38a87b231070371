"""Issue acceptance: `mic-pipeline trace` on a real pipeline (stream worker + SQL and Parquet sinks under
the supervisor, on the real broker) fed by a simulated run with every dead-letter class and re-sent
duplicates, plus crafted events: one parked until its member arrives, one parked until it times out,
one the quality gate quarantines, one whose dead-letter detail carries markup. Each outcome class is
found and checked field by field against the ground truth, the broker and the warehouse; an unknown
id is "never seen". The web page's trace box is driven in headless Chromium."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from ops_support import use_settings
from sinks_records import encode, record
from streams_fixtures import event, joined
from streams_kafka import free_port, wait_until
from test_ops_web import browser, chromedriver_path  # noqa: F401 (the browser fixture)

from mic_pipeline.config import HealthEndpoint, Settings
from mic_pipeline.ops.children import PipelinePorts, pipeline_children, pipeline_groups, settings_environment
from mic_pipeline.ops.supervisor import Supervisor
from mic_pipeline.ops.trace import Worker, trace_event
from producers.ground_truth import GroundTruthRecord, read_ground_truth
from schemas.encode import encode_event
from schemas.events import OrderPlaced
from schemas.inn import complete_inn
from schemas.topics import Family

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MEMBER_WAIT_S = 15.0
ATTACK = "<img src=x onerror=alert(1)>"
REASONS = (
    "malformed",
    "unknown_event_type",
    "unsupported_version",
    "schema_violation",
    "invalid_transition",
    "unknown_company",
)


@dataclass
class Run:
    settings: Settings
    workers: list[Worker]
    streams_port: int
    truth: list[GroundTruthRecord]
    released: str
    """order.placed of LATE, published before LATE's member.joined: parked, then released."""
    timed_out: str
    """order.placed of a company that never joins: parked, then unknown_company."""
    quarantined: str
    """An enriched order row with an industry the quality gate refuses (bypasses the stream)."""
    markup: str
    """order.placed whose industry is markup: schema_violation quoting it in the detail."""
    late: str
    stranger: str
    supervisor: Supervisor


def order_placed(company: str, industry: str = "metal_processing") -> Any:
    return event(
        company,
        OrderPlaced(
            order_id=f"o-{uuid.uuid4().hex[:8]}",
            industry=industry,  # type: ignore[arg-type]
            title="Brackets",
            quantity=3,
            budget_rub=Decimal("1000.00"),
            deadline=datetime(2020, 12, 1).date(),
        ),
    )


def send(settings: Settings, topic: str, key: str, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        producer.send(settings.topic(topic), key=key.encode(), value=value).get(timeout=10)
    finally:
        producer.close(timeout=10)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    from mic_pipeline.infra.topics import create_topics
    from mic_pipeline.ops.demo import delete_run_topics
    from mic_pipeline.ops.drain import drain

    bootstrap = os.environ.get("MIC_KAFKA_BOOTSTRAP")
    if not bootstrap:
        pytest.skip("MIC_KAFKA_BOOTSTRAP not set")
    directory = tmp_path_factory.mktemp("trace")
    settings = Settings(
        kafka_bootstrap=bootstrap,
        warehouse_dir=directory / "warehouse",
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        partitions=3,
        state_dir=directory / "state",
    )
    create_topics(settings)
    ports = PipelinePorts(free_port(), free_port(), free_port(), None)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MIC_STREAMS_", "MIC_STATUS_"))}
    environment = {**inherited, **settings_environment(settings)}
    log = (directory / "pipeline.log").open("w")
    children = pipeline_children(settings, ports, member_wait_s=MEMBER_WAIT_S)
    supervisor = Supervisor(children, base_environment=environment, output=log)
    try:
        supervisor.start()
        supervisor.wait_ready(180)
        truth_file = directory / "truth.jsonl"
        simulate = [
            sys.executable, "-m", "mic_pipeline.cli", "simulate", "--rate", "400", "--duration", "5",
            "--scale", "0.02", "--invalid-fraction", "0.08", "--seed", "5", "--ground-truth", str(truth_file),
        ]  # fmt: skip
        subprocess.run(simulate, env=environment, check=True, capture_output=True, timeout=120)
        late, stranger = complete_inn("770999111"), complete_inn("771999222")
        released, timed_out = order_placed(late), order_placed(stranger)
        send(settings, Family.ORDER.topic, late, encode_event(released))
        send(settings, Family.MEMBER.topic, late, encode_event(joined(late, minutes=-60)))
        markup = order_placed(late)
        raw = orjson.loads(encode_event(markup))
        raw["payload"]["industry"] = ATTACK
        send(settings, Family.ORDER.topic, late, orjson.dumps(raw))
        quarantined = record(Family.ORDER, "order.placed", late, datetime(2020, 9, 24, tzinfo=UTC),
                             order_id="q-1", industry="not_an_industry", title="t", quantity=1,
                             budget_rub="10.00", deadline="2020-12-01")  # fmt: skip
        send(settings, Family.ORDER.enriched_topic, late, encode(quarantined))
        groups = pipeline_groups(settings, environment)
        assert drain(settings, groups, 120, settle_s=3.0).drained
        send(settings, Family.ORDER.topic, stranger, encode_event(timed_out))
        workers = [Worker("streams", f"http://127.0.0.1:{ports.streams}/trace")]
        yield Run(
            settings, workers, ports.streams, list(read_ground_truth(truth_file)), str(released.event_id),
            str(timed_out.event_id), str(quarantined["event_id"]), str(markup.event_id), late, stranger,
            supervisor,
        )  # fmt: skip
    finally:
        supervisor.stop()
        log.close()
        delete_run_topics(settings)


def trace(run: Run, event_id: str) -> dict[str, Any]:
    return trace_event(run.settings, event_id, run.workers)


def read_record(settings: Settings, topic: str, partition: int, offset: int) -> Any:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                return records[0]
        raise AssertionError(f"no record at {topic}[{partition}]@{offset}")
    finally:
        consumer.close()


def check_input(run: Run, entry: dict[str, Any], truth: GroundTruthRecord, event_id: str) -> None:
    """An input record of the trace, field by field against the broker and the ground truth."""
    assert entry["topic"] == truth.topic
    assert entry["physical_topic"] == run.settings.topic(truth.topic)
    assert entry["key"] == truth.key
    assert entry["carries_event_id"] is True
    found = read_record(run.settings, entry["physical_topic"], entry["partition"], entry["offset"])
    assert found.key.decode() == truth.key and event_id.encode() in found.value
    assert entry["timestamp"] == datetime.fromtimestamp(found.timestamp / 1000, UTC).isoformat()


def check_landed(run: Run, document: dict[str, Any], table: str, event_type: str) -> None:
    """The SQL row, the enriched record and the Parquet file of a landed event, field by field."""
    [row] = document["sql"]["rows"]
    assert (row["table"], row["event_type"]) == (table, event_type)
    landed = datetime.fromisoformat(row["landed_at"])
    [enriched] = document["enriched"]
    assert enriched["topic"] == run.settings.topic(f"{document['inputs'][0]['topic']}.enriched")
    assert enriched["partition"] == document["inputs"][0]["partition"]
    assert enriched["carries_event_id"] is True
    assert datetime.fromisoformat(enriched["timestamp"]) <= landed <= datetime.now(UTC)
    [claim] = document["parquet"]["claims"]
    assert (claim["table"], claim["status"]) == (table, "landed")
    assert claim["enriched"] == {k: enriched[k] for k in ("topic", "partition", "offset")}
    path = run.settings.warehouse_dir / claim["file"]
    assert path.parent.name == f"event_date={datetime.fromisoformat(row['occurred_at']).date().isoformat()}"
    held = pq.read_table(path, columns=["event_id", "landed_at"]).to_pylist()
    assert next(r for r in held if r["event_id"] == document["event_id"])["landed_at"] is not None
    assert document["sql"]["dead_letters"] == [] and document["sql"]["quarantined"] == []


def test_a_parked_event_shows_whom_it_waits_for_then_times_out_as_unknown_company(run: Run) -> None:
    # published at the end of the set-up: first (this test runs first) it waits for its member
    wait_until(lambda: trace(run, run.timed_out)["outcome"] != "never seen", 10, "the stream to take it")
    parked = trace(run, run.timed_out)
    if parked["outcome"] == "parked: waiting for its member":
        [entry] = parked["inputs"]
        assert (entry["role"], entry["waiting_for"]) == ("parked", [run.stranger])
        assert 0 <= entry["waited_s"] <= MEMBER_WAIT_S and entry["expires_in_s"] <= MEMBER_WAIT_S
        since = datetime.fromisoformat(entry["waiting_since"])
        until = datetime.fromisoformat(entry["expires_at"])
        assert abs((until - since).total_seconds() - MEMBER_WAIT_S) < 1.0
        assert (entry["key"], entry["carries_event_id"]) == (run.stranger, True)
    else:
        pytest.fail(f"expected it parked for {MEMBER_WAIT_S:g} s, found {parked['outcome']}")
    wait_until(lambda: trace(run, run.timed_out)["sql"]["dead_letters"] != [], 60, "the time-out")
    document = trace(run, run.timed_out)
    assert document["outcome"] == "dead-lettered: unknown_company after waiting for its member"
    [letter] = document["sql"]["dead_letters"]
    assert letter["detail"] == f"not an active member after {MEMBER_WAIT_S:g} s: {run.stranger}"


def test_an_accepted_event_is_found_in_every_place_it_went(run: Run) -> None:
    ids = [r.event_id for r in run.truth]
    truth = next(r for r in run.truth if r.event_type == "member.joined" and r.expected == "valid"
                 and ids.count(r.event_id) == 1)  # fmt: skip
    assert truth.event_id is not None
    started = time.perf_counter()
    document = trace(run, truth.event_id)
    print(f"trace of an accepted event: {time.perf_counter() - started:.2f} s")  # the report's figure
    assert document["outcome"] == "accepted"
    [entry] = document["inputs"]
    origin = f"{entry['topic']}/{entry['partition']}/{entry['offset']}"
    assert (entry["role"], entry["decision"], entry["decided_at"]) == ("decided", "ok", origin)
    assert entry["after_waiting"] is False
    check_input(run, entry, truth, truth.event_id)
    [decision] = document["stream"]["decisions"]
    assert decision["origin"] == origin
    assert decision["duplicates"] == [] and decision["partition"] == entry["partition"]
    check_landed(run, document, "member_events", "member.joined")
    assert document["complete"] is True and document["notes"] == []


def test_duplicates_name_the_origin_they_repeat(run: Run) -> None:
    copies = [r for r in run.truth if r.expected == "duplicate"]
    assert copies, "the simulated run re-sent no event"
    truth = copies[0]
    assert truth.event_id is not None
    document = trace(run, truth.event_id)
    assert document["outcome"].startswith("accepted")
    decided = [e for e in document["inputs"] if e["role"] == "decided"]
    dropped = [e for e in document["inputs"] if e["role"] == "duplicate"]
    assert len(decided) == 1 and len(dropped) == sum(1 for r in copies if r.event_id == truth.event_id)
    origin = f"{decided[0]['topic']}/{decided[0]['partition']}/{decided[0]['offset']}"
    for entry in [*decided, *dropped]:
        check_input(run, entry, truth, truth.event_id)
    assert all(e["duplicate_of"] == origin and e["decision"] == "duplicate" for e in dropped)
    assert {e["offset"] for e in dropped}.isdisjoint({decided[0]["offset"]})
    assert len(document["sql"]["rows"]) == 1 and len(document["parquet"]["claims"]) == 1


@pytest.mark.parametrize("reason", REASONS)
def test_each_dead_letter_reason_is_found_with_its_original_record(run: Run, reason: str) -> None:
    # a malformed record's id is readable only when its value is an object (duplicate keys)
    truth = next(
        r for r in run.truth
        if r.expected == reason and r.event_id is not None and r.variant not in ("not_object",)
    )  # fmt: skip
    assert truth.event_id is not None
    if reason == "unknown_company":  # decided once it waited MEMBER_WAIT_S
        event_id = truth.event_id
        wait_until(lambda: trace(run, event_id)["sql"]["dead_letters"] != [], 60, "its dead letter")
    document = trace(run, truth.event_id)
    after = " after waiting for its member" if reason == "unknown_company" else ""
    assert document["outcome"] == f"dead-lettered: {reason}{after}"
    [letter] = document["sql"]["dead_letters"]
    assert (letter["reason"], letter["event_id"], letter["key"]) == (reason, truth.event_id, truth.key)
    assert letter["original"]["topic"] == truth.topic
    [entry] = [e for e in document["inputs"] if e["offset"] == letter["original"]["offset"]]
    check_input(run, entry, truth, truth.event_id)
    if reason in ("invalid_transition", "unknown_company"):  # rules: the stream's marker says so
        assert (entry["role"], entry["decision"]) == ("decided", reason)
    else:  # decode failures leave no marker
        assert (entry["role"], entry["decision"]) == ("dead-lettered", reason)
    dead = read_record(run.settings, run.settings.topic("mic.deadletter"), **letter["deadletter"])
    assert orjson.loads(dead.value)["reason"] == reason
    assert document["sql"]["rows"] == [] and document["parquet"]["claims"] == []
    assert document["enriched"] == []


def test_an_event_parked_until_its_member_arrived_is_accepted_after_waiting(run: Run) -> None:
    document = trace(run, run.released)
    assert document["outcome"] == "accepted after waiting for its member"
    [entry] = document["inputs"]
    assert entry["after_waiting"] is True and entry["decided_at"].startswith("recheck/")
    assert (entry["topic"], entry["key"], entry["carries_event_id"]) == ("mic.orders", run.late, True)
    check_landed(run, document, "order_events", "order.placed")


def test_a_quarantined_row_is_found_in_both_sinks_quarantine(run: Run) -> None:
    document = trace(run, run.quarantined)
    assert document["outcome"] == "quarantined by the quality gate (sql, parquet)"
    [kept] = document["sql"]["quarantined"]
    assert kept["table"] == "order_events" and any("industry" in f for f in kept["failures"])
    [claim] = document["parquet"]["claims"]
    assert claim["status"] == "quarantined"
    assert claim["file"] == (
        f"_quarantine/order_events/{claim['enriched']['topic']}+{claim['enriched']['partition']}"
        f"+{claim['enriched']['offset']:019d}.json"
    )
    assert json.loads((run.settings.warehouse_dir / claim["file"]).read_text())["event_id"] == run.quarantined
    assert kept["enriched"] == claim["enriched"]
    [enriched] = document["enriched"]
    assert enriched["carries_event_id"] is True
    assert enriched["topic"] == run.settings.topic("mic.orders.enriched")
    assert document["inputs"] == [] and document["sql"]["rows"] == []


def test_an_unknown_id_is_never_seen_and_the_cli_says_so(
    run: Run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mic_pipeline.ops import cli as ops_cli

    unknown = str(uuid.uuid4())
    document = trace(run, unknown)
    assert (document["outcome"], document["complete"], document["inputs"]) == ("never seen", True, [])
    use_settings(monkeypatch, run.settings)
    parser = argparse.ArgumentParser(prog="mic-pipeline")
    ops_cli.register(parser.add_subparsers(dest="command", required=True))
    url = f"http://127.0.0.1:{run.streams_port}/health"
    args = parser.parse_args(["trace", unknown, "--health-url", f"streams={url}"])
    assert args.handler(args) == 1
    assert capsys.readouterr().out.splitlines()[0] == f"event {unknown}: never seen"
    args = parser.parse_args(["trace", run.markup, "--health-url", f"streams={url}"])
    assert args.handler(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"event {run.markup}: dead-lettered: schema_violation"
    assert any(ATTACK in line and line.startswith("dead letter: schema_violation: ") for line in lines)
    args = parser.parse_args(["trace", "--company", run.late, "--since", "1h", "--json"])
    assert args.handler(args) == 0
    listed = orjson.loads(capsys.readouterr().out)
    outcomes = {e["event_id"]: e["outcome"] for e in listed["events"]}
    assert outcomes[run.released] == "accepted"
    assert outcomes[run.markup] == "dead-lettered: schema_violation"
    assert outcomes[run.quarantined] == "quarantined by the quality gate (sql)"


def test_the_trace_box_renders_a_dead_letter_detail_with_markup_as_text(
    run: Run,
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from mic_pipeline.ops.verdict import Thresholds
    from mic_pipeline.ops.web import make_server

    server = make_server(
        run.settings,
        thresholds=Thresholds(),
        health_endpoints=(HealthEndpoint(f"http://127.0.0.1:{run.streams_port}/health", "streams"),),
        streams_url=f"http://127.0.0.1:{run.streams_port}/aggregates",
        port=0,
        refresh_ms=60_000,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        browser.execute_script("window.alert = () => { document.body.dataset.pwned = 'yes'; };")

        def search(text: str) -> None:
            box = browser.find_element(By.ID, "trace-input")
            box.clear()
            box.send_keys(text)
            browser.find_element(By.ID, "trace-button").click()
            WebDriverWait(browser, 30, poll_frequency=0.2).until(
                lambda d: d.find_element(By.ID, "trace-result").get_attribute("data-state")
                in ("done", "error")
            )

        search(run.markup)
        outcome = browser.find_element(By.ID, "trace-outcome").text
        assert outcome == f"{run.markup}: dead-lettered: schema_violation"
        rows = browser.execute_script(
            "return [...document.querySelectorAll('#trace-result tr')].map("
            "tr => [tr.dataset.kind, ...[...tr.cells].map(c => c.textContent)]);"
        )
        [letter] = [r for r in rows if r[0] == "dead-letter"]
        assert letter[1] == "dead letter schema_violation" and ATTACK in letter[3]
        assert letter[3] == f"$.payload.industry: invalid enum value '{ATTACK}'"
        [entry] = [r for r in rows if r[0] == "input"]
        assert entry[2] == "dead-lettered schema_violation" and f"key {run.late}" in entry[3]
        assert browser.find_elements(By.CSS_SELECTOR, "#trace-result img, main img") == []
        browser.save_screenshot(str(run.settings.state_dir.parent / "trace-box.png"))
        search(run.released)
        assert browser.find_element(By.ID, "trace-outcome").text == (
            f"{run.released}: accepted after waiting for its member"
        )
        kinds = [r[0] for r in browser.execute_script(
            "return [...document.querySelectorAll('#trace-result tr')].map(tr => [tr.dataset.kind]);"
        )]  # fmt: skip
        assert kinds == ["input", "enriched", "sql", "parquet"]
        search(str(uuid.uuid4()))
        assert browser.find_element(By.ID, "trace-outcome").text.endswith(": never seen")
        search("not-an-id")
        error = browser.find_element(By.ID, "trace-error").text
        assert error.startswith("trace failed: event_id must be a UUID")
        assert browser.execute_script("return document.body.dataset.pwned") is None  # no handler ran
        severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert [m for m in severe if "/api/aggregates" not in m and "/api/trace" not in m] == []
    finally:
        server.shutdown()
        server.server_close()


def test_the_trace_index_is_read_only_and_needs_no_scan(run: Run) -> None:
    """The Parquet claim index is opened read-only: tracing never changes the warehouse."""
    index = run.settings.warehouse_dir / "_index" / "event_ids.db"
    before = index.stat().st_mtime_ns
    trace(run, run.released)
    assert index.stat().st_mtime_ns == before
    assert Path(run.settings.warehouse_dir / "warehouse.db").exists()


def test_a_stopped_stream_raises_the_freshness_alarm_and_it_clears_when_the_stream_resumes(run: Run) -> None:
    """Last: pauses the stream worker (SIGSTOP: it neither commits nor leaves), feeds valid orders,
    and expects `status` to say, for both sinks, that records wait longer than the threshold."""
    import signal

    from mic_pipeline.ops.status import collect_status
    from mic_pipeline.ops.verdict import Thresholds, evaluate

    thresholds = Thresholds(max_freshness_seconds=10)

    def stale() -> list[str]:
        snapshot = collect_status(run.settings, window_s=0)
        return [r for r in evaluate(snapshot, thresholds).reasons if "records are on their way" in r]

    assert stale() == []
    pid = run.supervisor.pids()["streams"]
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        for _ in range(5):
            send(run.settings, Family.ORDER.topic, run.late, encode_event(order_placed(run.late)))
        wait_until(lambda: len(stale()) == 2, 45, "the freshness alarm for both sinks")
        alarm_after = time.monotonic() - stopped_at
        reasons = stale()
        assert {r.split(" ", 2)[:2][1] for r in reasons} == {"(sql):", "(parquet):"}
        assert all(r.startswith("order_events (") and "> 10 s)" in r for r in reasons)
        assert 10 <= alarm_after < 45
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: stale() == [], 90, "the alarm to clear once the stream resumed")
