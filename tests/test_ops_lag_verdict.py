"""Issue acceptance on the real broker: a real SQL sink (`mic-pipeline sink sql`, its own process, 2 s
batches) fed at a steady 600 records/s reads OK on every `status` -- although it always has a batch of
records uncommitted; stopped while the records keep coming, it reads DEGRADED (not committing)
once its oldest unprocessed record is older than its commit interval (2 s) plus the margin (10 s
here), then FAILING (commits stopped) once older than the interval plus twice the margin: the stated
times are "DEGRADED within 25 s, FAILING within 40 s of the stop" (12 s and 22 s, plus a 5 s window
and a status run's own time), and the verdicts never go back meanwhile."""

from __future__ import annotations

import argparse
import re
import threading
import time
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer
from ops_support import delete_groups, sql_sink, use_settings
from sinks_records import PROFILE, company, encode, record
from streams_kafka import wait_until

from mic_pipeline.config import Settings
from mic_pipeline.ops import cli as ops_cli
from schemas.topics import Family

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RATE = 600.0
MARGIN_S = 10


class SteadyProducer(threading.Thread):
    """Publishes fresh `member.joined` enriched rows at `rate` per second until stopped."""

    def __init__(self, settings: Settings, rate: float) -> None:
        super().__init__(name="steady-producer", daemon=True)
        self.settings = settings
        self.rate = rate
        self.stopped = threading.Event()
        self.sent = 0

    def run(self) -> None:
        import datetime as dt

        topic = self.settings.topic(Family.MEMBER.enriched_topic)
        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all", linger_ms=5)
        started = time.monotonic()
        try:
            while not self.stopped.is_set():
                due = int((time.monotonic() - started) * self.rate)
                while self.sent < due:
                    inn = company(self.sent)
                    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=self.sent)
                    row = record(Family.MEMBER, "member.joined", inn, at, name="C", kind="company", **PROFILE)
                    producer.send(topic, key=inn.encode(), value=encode(row))
                    self.sent += 1
                self.stopped.wait(0.02)  # pacing of the producer, not a wait for a result
        finally:
            producer.close(timeout=10)


def status(capsys: pytest.CaptureFixture[str], group: str, *extra: str) -> tuple[int, dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="mic-pipeline")
    ops_cli.register(parser.add_subparsers(dest="command", required=True))
    argv = ["status", "--json", "--group", group, f"--lag-margin-seconds={MARGIN_S}", *extra]
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code, orjson.loads(capsys.readouterr().out)


def test_a_steady_batching_sink_is_ok_then_stopped_it_degrades_then_fails_within_stated_times(
    pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = pipeline_topics
    use_settings(monkeypatch, settings)
    group = settings.topic("mic-sink-sql")  # a sink group: commit interval 2 s
    producer = SteadyProducer(settings, RATE)
    try:
        # a live sink that batches for its whole commit interval (--live-batch-wait = the 2 s max wait,
        # as a sink behind does): the in-flight batch this test is about, at every sample (with the
        # 0.5 s default, a caught-up sink's lag fell to 100-290 records between samples)
        with sql_sink(settings, group, "--live-batch-wait", "2") as sink:
            producer.start()
            wait_until(
                lambda: status(capsys, group, "--window-seconds=0")[1]["groups"] != [], 60, "first commit"
            )
            seen = []
            for _ in range(4):  # about 25 s of steady traffic, each status over a 5 s window
                code, document = status(capsys, group)
                seen.append((document["verdict"], document["reasons"], document["groups"][0]["lag_records"]))
                assert (code, document["verdict"], document["reasons"]) == (0, "OK", []), seen
                assert document["groups"][0]["state"] == "ok"
                assert document["window"]["samples"] == 3 and document["window"]["span_seconds"] >= 5
            # a batching sink always has a batch in flight (up to ~1,500 records here: the old default
            # rule, > 1,000 records, read DEGRADED on most of these runs)
            assert max(lag for _, _, lag in seen) > 300, seen
            assert sink.poll() is None
        stopped_at = time.monotonic()  # the sink has committed what it had and left
        topic = re.escape(settings.topic(Family.MEMBER.enriched_topic))
        verdicts: list[tuple[float, str]] = []
        while True:  # OK while its oldest record is within 2 s + 10 s, then DEGRADED, then FAILING
            code, document = status(capsys, group)
            verdicts.append((round(time.monotonic() - stopped_at, 1), document["verdict"]))
            if document["verdict"] == "FAILING":
                break
            if document["verdict"] == "DEGRADED":
                [reason] = document["reasons"]
                assert re.fullmatch(
                    rf"group {re.escape(group)}: not committing: {topic}\[\d\] committed offset \d+ "
                    rf"unchanged for \d+ s with \d+ records waiting, the oldest \d+ s old \(> 12 s = "
                    rf"commit interval 2 s \+ margin {MARGIN_S} s\)( \(and [12] more partitions?\))?",
                    reason,
                ), reason
                assert document["groups"][0]["state"] == "not committing" and code == 1
            else:
                assert (document["verdict"], document["reasons"]) == ("OK", []), verdicts
            assert time.monotonic() - stopped_at < 45, verdicts
        order = [v for _, v in verdicts]
        assert order == sorted(order, key=["OK", "DEGRADED", "FAILING"].index), verdicts  # never back
        degraded_after = next(t for t, v in verdicts if v == "DEGRADED")
        failing_after = verdicts[-1][0]
        assert degraded_after < 25 and failing_after < 40, verdicts
        assert code == 2
        [reason] = document["reasons"]
        assert re.fullmatch(
            rf"group {re.escape(group)}: commits stopped: {topic}\[\d\] committed offset \d+ unchanged for "
            rf"\d+ s with \d+ records waiting, the oldest \d+ s old \(> 22 s = commit interval 2 s \+ "
            rf"2 x margin {MARGIN_S} s\)( \(and [12] more partitions?\))?",
            reason,
        ), reason
        assert document["groups"][0]["state"] == "stopped"
        print(f"verdicts after the stop {verdicts}; while running {seen}")
    finally:
        producer.stopped.set()
        producer.join(timeout=20)
        delete_groups(settings, [group])
