"""`status`, `drain` and `deadletters` against the real broker, on an isolated set of topics."""

from __future__ import annotations

import base64
import time
import uuid

import orjson
import pytest
from kafka import TopicPartition
from ops_support import (
    commit,
    consume_and_commit,
    consumer_group,
    dead_letter,
    delete_groups,
    produce,
    read_topic,
    run_cli,
    use_settings,
)

from mic_pipeline.config import Settings
from mic_pipeline.ops.drain import drain
from mic_pipeline.ops.status import collect_status
from schemas.inn import complete_inn
from schemas.topics import DEADLETTER_TOPIC, Family

pytestmark = pytest.mark.kafka


def test_exact_lag_age_and_throughput_of_known_offsets(pipeline_topics: Settings) -> None:
    settings = pipeline_topics
    orders = settings.topic(Family.ORDER.topic)
    now_ms = int(time.time() * 1000)
    produce(settings, orders, [b"old"] * 8, partition=0, timestamp_ms=now_ms - 120_000)
    produce(settings, orders, [b"recent"] * 2, partition=0, timestamp_ms=now_ms - 30_000)
    produce(settings, orders, [b"now"] * 3, partition=2)
    streams, sink = f"{settings.topic_prefix}streams", f"{settings.topic_prefix}other"
    commit(settings, streams, {TopicPartition(orders, 0): 4, TopicPartition(orders, 2): 3})
    commit(settings, sink, {TopicPartition(orders, 0): 8})
    try:
        snapshot = collect_status(settings)
    finally:
        delete_groups(settings, [streams, sink])
    assert snapshot.broker_error is None
    assert snapshot.missing_topics == ()
    by_group = {g.group: g for g in snapshot.groups}
    assert set(by_group) == {streams, sink}
    lags = {p.partition: (p.committed, p.end, p.lag_records) for p in by_group[streams].partitions}
    assert lags == {0: (4, 10, 6), 1: (None, 0, 0), 2: (3, 3, 0)}
    assert by_group[streams].lag_records == 6
    assert 118 <= by_group[streams].lag_seconds <= 150
    sink_lags = {p.partition: (p.committed, p.lag_records) for p in by_group[sink].partitions}
    assert sink_lags == {0: (8, 2), 1: (None, 0), 2: (None, 3)}
    assert 28 <= by_group[sink].lag_seconds <= 60
    throughput = {t.topic: t.records for t in snapshot.throughput}
    assert throughput[orders] == 5
    assert throughput[settings.topic(Family.MEMBER.topic)] == 0


def test_status_json_degrades_while_a_consumer_lags_and_recovers_when_it_catches_up(
    pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = pipeline_topics
    use_settings(monkeypatch, settings)
    enriched = settings.topic(Family.ORDER.enriched_topic)
    group = f"{settings.topic_prefix}sink-sql"
    produce(settings, enriched, [b"row"] * 10)
    try:
        with consumer_group(settings, group, enriched) as consumer:
            consume_and_commit(consumer, 4)
            # one sample (no window): only the opt-in record count judges this idle consumer
            code, out, _ = run_cli(capsys, "status", "--json", "--max-lag-records", "5", "--window-seconds=0")
            document = orjson.loads(out)
            assert (code, document["verdict"]) == (1, "DEGRADED")
            assert document["reasons"] == [f"group {group}: lag 6 records (> 5)"]
            assert document["groups"][0]["lag_records"] == 6
            consume_and_commit(consumer, 6)
            code, out, _ = run_cli(capsys, "status", "--json", "--max-lag-records", "5", "--window-seconds=0")
            document = orjson.loads(out)
            assert (code, document["verdict"], document["reasons"]) == (0, "OK", [])
            assert document["groups"][0]["lag_records"] == 0
    finally:
        delete_groups(settings, [group])


def test_status_fails_when_the_broker_is_unreachable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_settings(monkeypatch, settings)
    monkeypatch.setenv("MIC_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    code, out, _ = run_cli(capsys, "status", "--json")
    document = orjson.loads(out)
    assert (code, document["verdict"]) == (2, "FAILING")
    assert document["reasons"][0].startswith("Kafka broker unreachable: 127.0.0.1:1")


def test_drain_succeeds_when_caught_up_and_times_out_while_lagging(
    pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = pipeline_topics
    use_settings(monkeypatch, settings)
    members = settings.topic(Family.MEMBER.topic)
    group = f"{settings.topic_prefix}streams"
    produce(settings, members, [b"m"] * 5, partition=1)
    try:
        unconsumed = drain(settings, None, timeout_s=1.0, settle_s=0.2)
        assert not unconsumed.drained
        assert unconsumed.pending == (f"{members}: 5 records but no consumer group has committed on it",)
        commit(settings, group, {TopicPartition(members, 1): 3})
        code, _, err = run_cli(capsys, "drain", "--timeout", "1.5", "--settle", "0.2")
        assert code == 1
        assert f"{group} {members}[1]: 2 records behind (committed 3, end 5)" in err
        commit(settings, group, {TopicPartition(members, 1): 5})
        code, out, _ = run_cli(capsys, "drain", "--timeout", "10", "--settle", "0.5", "--group", group)
        assert code == 0
        assert out.startswith("drained")
        missing = f"{settings.topic_prefix}never-started"
        code, _, err = run_cli(capsys, "drain", "--timeout", "1", "--group", group, "--group", missing)
        assert code == 1
        assert f"{missing}: no committed offsets yet" in err
    finally:
        delete_groups(settings, [group])


def test_dead_letters_are_counted_per_reason_and_listed(
    pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = pipeline_topics
    use_settings(monkeypatch, settings)
    topic = settings.topic(DEADLETTER_TOPIC)
    letters = [
        dead_letter(settings, reason="malformed", original_topic="mic.orders", original_value=b"{oops"),
        dead_letter(
            settings,
            reason="malformed",
            original_topic="mic.patents",
            original_value=b"\xff\xfe",
            failed_at="2026-01-02T00:00:00Z",
        ),
        dead_letter(
            settings,
            reason="unknown_company",
            original_topic="mic.orders",
            original_value=b"{}",
            event_id="ev-1",
            event_type="order.placed",
            failed_at="2026-01-03T00:00:00Z",
        ),
    ]
    produce(settings, topic, letters[:2], partition=0)
    produce(settings, topic, letters[2:], partition=1)
    produce(settings, topic, [b"not a dead letter"], partition=2)
    produce(settings, topic, [letters[0]], partition=2, timestamp_ms=int(time.time() * 1000) - 2 * 3600_000)

    snapshot = collect_status(settings)
    assert dict(snapshot.dead_letters_last_hour) == {"malformed": 2, "unknown_company": 1}

    code, out, _ = run_cli(capsys, "deadletters", "list", "--json")
    listed = [orjson.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [(d["reason"], d["failed_at"]) for d in listed] == [
        ("malformed", "2026-01-01T00:00:00+00:00"),
        ("malformed", "2026-01-01T00:00:00+00:00"),
        ("malformed", "2026-01-02T00:00:00+00:00"),
        ("unknown_company", "2026-01-03T00:00:00+00:00"),
    ]
    assert listed[3]["event_id"] == "ev-1"
    assert listed[3]["original_topic"] == settings.topic("mic.orders")
    assert base64.b64decode(listed[2]["original_value"]) == b"\xff\xfe"

    code, out, _ = run_cli(capsys, "deadletters", "list", "--reason", "malformed", "--since", "2026-01-02")
    assert code == 0
    assert out.splitlines()[-1] == "1 dead letters matched (malformed 1); showing 1"
    code, out, _ = run_cli(capsys, "deadletters", "list", "--json", "--limit", "1")
    assert [orjson.loads(line)["event_id"] for line in out.splitlines()] == ["ev-1"]


def member_joined(company_id: str) -> bytes:
    """A valid `member.joined` as an integrating system would send it (fixed key order and spacing)."""
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "member.joined",
        "schema_version": 1,
        "occurred_at": "2026-01-01T10:00:00+03:00",
        "source": "ops-test",
        "company_id": company_id,
        "payload": {
            "name": "ООО Тест",
            "kind": "company",
            "status": "participant",
            "region_code": "77",
            "sector": "it",
            "size": "small",
            "state_corporation": None,
        },
    }
    return orjson.dumps(event, option=orjson.OPT_INDENT_2)


def test_replay_republishes_byte_identical_values_with_their_keys(
    pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = pipeline_topics
    use_settings(monkeypatch, settings)
    company = complete_inn("770708389")
    valid = member_joined(company)
    invalid = b"\xff not utf-8"
    produce(
        settings,
        settings.topic(DEADLETTER_TOPIC),
        [
            dead_letter(
                settings,
                reason="invalid_transition",
                original_topic="mic.membership",
                original_value=valid,
                key=company.encode(),
                event_id=orjson.loads(valid)["event_id"],
                event_type="member.joined",
            ),
            dead_letter(
                settings,
                reason="malformed",
                original_topic="mic.membership",
                original_value=invalid,
                key=None,
            ),
        ],
    )
    members = settings.topic(Family.MEMBER.topic)

    code, out, _ = run_cli(capsys, "deadletters", "replay", "--dry-run")
    assert code == 0
    assert out.splitlines()[-1] == "2 selected, would replay 1, skipped still invalid: malformed: 1"
    assert read_topic(settings, members, expected=1, timeout_s=1.0) == []

    code, out, _ = run_cli(capsys, "deadletters", "replay")
    assert code == 0
    assert out.splitlines()[-1] == "2 selected, replayed 1, skipped still invalid: malformed: 1"
    records = read_topic(settings, members, expected=1)
    assert [(r.key, r.value) for r in records] == [(company.encode(), valid)]
    assert dict(records[0].headers)["mic-replayed-from"].startswith(settings.topic(DEADLETTER_TOPIC).encode())

    code, out, _ = run_cli(capsys, "deadletters", "replay", "--reason", "malformed", "--force")
    assert code == 0
    assert out.splitlines()[-1] == "1 selected, replayed 1, skipped none"
    records = read_topic(settings, members, expected=2)
    assert {(r.key, r.value) for r in records} == {(company.encode(), valid), (None, invalid)}
