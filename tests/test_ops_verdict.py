"""The verdict rules of `status`, its thresholds, lag arithmetic and the drain condition, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mic_pipeline.config import ConfigError
from mic_pipeline.ops.drain import still_pending
from mic_pipeline.ops.kafka_probe import is_pipeline_topic, partition_lag
from mic_pipeline.ops.verdict import (
    ComponentHealth,
    FamilyFreshness,
    GroupStatus,
    PartitionLag,
    QualityGateStatus,
    StatusSnapshot,
    Thresholds,
    Verdict,
    evaluate,
    snapshot_to_json,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def group(name: str, *lags: tuple[int, float]) -> GroupStatus:
    return GroupStatus(
        name,
        tuple(PartitionLag("p.mic.orders", i, 10, 10 + n, n, s) for i, (n, s) in enumerate(lags)),
    )


def test_healthy_snapshot_is_ok_with_no_reasons() -> None:
    snapshot = StatusSnapshot(taken_at=NOW, groups=(group("g", (0, 0.0), (0, 0.0)),))
    assessment = evaluate(snapshot, Thresholds())
    assert assessment.verdict is Verdict.OK
    assert assessment.reasons == ()
    assert Verdict.OK.exit_code == 0


def test_lag_over_record_threshold_degrades() -> None:
    snapshot = StatusSnapshot(taken_at=NOW, groups=(group("sink", (6, 1.0), (5, 2.0)),))
    assessment = evaluate(snapshot, Thresholds(max_lag_records=10, max_lag_seconds=None))
    assert assessment.verdict is Verdict.DEGRADED
    assert assessment.reasons == ("group sink: lag 11 records (> 10)",)
    assert evaluate(snapshot, Thresholds(max_lag_records=11)).verdict is Verdict.OK
    assert Verdict.DEGRADED.exit_code == 1


def test_lag_age_degrades_when_asked_and_fails_far_behind() -> None:
    thresholds = Thresholds(max_lag_records=None, max_lag_seconds=20, failing_lag_seconds=600)
    old = StatusSnapshot(taken_at=NOW, groups=(group("g", (1, 21.0)),))
    assert evaluate(old, thresholds).reasons == ("group g: oldest unprocessed record is 21 s old (> 20 s)",)
    assert evaluate(old, Thresholds()).verdict is Verdict.OK  # within 5 s + 60 s: no opt-in limit
    ancient = StatusSnapshot(taken_at=NOW, groups=(group("g", (1, 601.0)),))
    assessment = evaluate(ancient, thresholds)
    assert assessment.verdict is Verdict.FAILING
    assert assessment.reasons[0] == (
        "group g: far behind: p.mic.orders[0] oldest unprocessed record is 601 s old (> 600 s)"
    )
    assert Verdict.FAILING.exit_code == 2


def test_broker_unreachable_fails_and_lists_failing_reasons_first() -> None:
    snapshot = StatusSnapshot(
        taken_at=NOW,
        broker_error="127.0.0.1:1: timeout",
        quality=QualityGateStatus(available=True, failures=2),
    )
    assessment = evaluate(snapshot, Thresholds())
    assert assessment.verdict is Verdict.FAILING
    assert assessment.reasons[0].startswith("Kafka broker unreachable")
    assert assessment.reasons[1] == "quality gate: 2 failed or quarantined batches"


def test_any_quarantine_degrades() -> None:
    snapshot = StatusSnapshot(taken_at=NOW, quality=QualityGateStatus(available=True, failures=1))
    assert evaluate(snapshot, Thresholds()).verdict is Verdict.DEGRADED


def test_dead_letters_only_when_a_threshold_is_set_and_freshness_by_default() -> None:
    snapshot = StatusSnapshot(
        taken_at=NOW,
        dead_letters_last_hour={"malformed": 3, "unknown_company": 2},
        freshness=(FamilyFreshness("order", "order_events", NOW, 900.0, "sql", 0, None),),
    )
    assert evaluate(snapshot, Thresholds()).verdict is Verdict.OK
    strict = Thresholds(max_freshness_seconds=600, max_dead_letters_per_hour=4)
    assessment = evaluate(snapshot, strict)
    assert assessment.reasons == ("5 dead letters in the last hour (> 4)",)
    waiting = FamilyFreshness("order", "order_events", NOW, 900.0, "sql", 7, 899.0)
    assert evaluate(StatusSnapshot(taken_at=NOW, freshness=(waiting,)), Thresholds()).reasons == (
        "order_events (sql): newest row landed 900 s ago while 7 records are on their way, "
        "the oldest waiting 899 s (> 120 s)",
    )


def test_missing_topics_degrade() -> None:
    snapshot = StatusSnapshot(taken_at=NOW, missing_topics=("p.mic.orders",))
    assessment = evaluate(snapshot, Thresholds())
    assert assessment.verdict is Verdict.DEGRADED
    assert assessment.reasons == ("topics missing on the broker: p.mic.orders",)


def test_a_named_group_that_never_committed_degrades_once_its_records_waited_past_its_limit() -> None:
    """The quick demo on an overloaded machine: the Parquet sink committed nothing for 2 minutes and
    the page, which watched only the groups that had committed, read OK throughout. Named groups
    (`run`/`demo` name the pipeline's own) are judged like a consumer that stopped: fine while the
    oldest record on their topics is within the interval + margin (a first batch), DEGRADED past it."""
    def snap(waiting: dict[str, float]) -> StatusSnapshot:
        return StatusSnapshot(
            taken_at=NOW, missing_groups=("p.mic-sink-parquet", "p.mic-sink-sql"), missing_waiting_s=waiting
        )

    assert evaluate(snap({}), Thresholds()).verdict is Verdict.OK  # nothing on their topics yet
    assert evaluate(snap({"p.mic-sink-parquet": 61.9}), Thresholds()).verdict is Verdict.OK
    assessment = evaluate(snap({"p.mic-sink-parquet": 62.5, "p.mic-sink-sql": 3.0}), Thresholds())
    assert assessment.verdict is Verdict.DEGRADED
    assert assessment.reasons == (
        "group p.mic-sink-parquet: no committed offsets while its oldest record waited 62 s (> 62 s = "
        "commit interval + margin): not started, not subscribed, or stuck in its first batch",
    )
    # never FAILING on this alone: a new group's first batch on an old backlog takes a moment
    assert evaluate(snap({"p.mic-sink-parquet": 86400.0}), Thresholds()).verdict is Verdict.DEGRADED


def test_thresholds_from_env_parse_and_disable() -> None:
    thresholds = Thresholds.from_env(
        {
            "MIC_STATUS_MAX_LAG_RECORDS": "5",
            "MIC_STATUS_MAX_LAG_SECONDS": "off",
            "MIC_STATUS_MAX_FRESHNESS_SECONDS": "30.5",
        }
    )
    assert thresholds.max_lag_records == 5
    assert thresholds.max_lag_seconds is None
    assert Thresholds().max_lag_records is None and Thresholds().max_lag_seconds is None
    assert thresholds.max_freshness_seconds == 30.5
    assert thresholds.failing_lag_seconds == Thresholds().failing_lag_seconds
    with pytest.raises(ConfigError) as error:
        Thresholds.from_env({"MIC_STATUS_MAX_LAG_RECORDS": "1.5"})
    assert str(error.value) == "MIC_STATUS_MAX_LAG_RECORDS='1.5': must be an integer or 'off'"
    with pytest.raises(ConfigError, match=r"MIC_STATUS_MAX_LAG_SECONDS='-1': must be >= 0"):
        Thresholds.from_env({"MIC_STATUS_MAX_LAG_SECONDS": "-1"})
    with pytest.raises(ConfigError, match="MIC_STATUS_FAILING_NOT_READY_SECONDS='nan'"):
        Thresholds.from_env({"MIC_STATUS_FAILING_NOT_READY_SECONDS": "nan"})
    assert Thresholds.from_env({"MIC_STATUS_FAILING_NOT_READY_SECONDS": "60"}).failing_not_ready_seconds == 60


def test_partition_lag_counts_from_committed_or_first_retained_offset() -> None:
    now_ms = 1_000_000
    lag = partition_lag(
        "t", 0, committed=7, start=0, end=10, oldest_timestamp_ms=now_ms - 2500, now_ms=now_ms
    )
    assert (lag.lag_records, lag.lag_seconds) == (3, 2.5)
    never = partition_lag("t", 1, committed=None, start=4, end=10, oldest_timestamp_ms=now_ms, now_ms=now_ms)
    assert (never.lag_records, never.lag_seconds) == (6, 0.0)
    expired = partition_lag("t", 2, committed=1, start=5, end=10, oldest_timestamp_ms=None, now_ms=now_ms)
    assert expired.lag_records == 5
    caught_up = partition_lag("t", 3, committed=10, start=0, end=10, oldest_timestamp_ms=0, now_ms=now_ms)
    assert (caught_up.lag_records, caught_up.lag_seconds) == (0, 0.0)


def test_pipeline_topics_are_the_prefixed_ones() -> None:
    from mic_pipeline.config import Settings

    prefixed = Settings(topic_prefix="run1.")
    assert is_pipeline_topic("run1.mic.orders", prefixed)
    assert is_pipeline_topic("run1.mic-streams-members-changelog", prefixed)
    assert not is_pipeline_topic("run2.mic.orders", prefixed)
    assert not is_pipeline_topic("run1.other", prefixed)
    bare = Settings()
    assert is_pipeline_topic("mic.deadletter", bare)
    assert is_pipeline_topic("mic-streams-aggregates-changelog", bare)
    assert not is_pipeline_topic("__consumer_offsets", bare)
    assert not is_pipeline_topic("microservice-events", bare)


def test_still_pending_names_lagging_partitions_missing_groups_and_unconsumed_topics() -> None:
    groups = [group("streams", (0, 0.0), (2, 1.0))]
    pending = still_pending(groups, ["sink-sql"], {"p.mic.orders": 12, "p.mic.orders.enriched": 3, "p.x": 0})
    assert pending == [
        "streams p.mic.orders[1]: 2 records behind (committed 10, end 12)",
        "sink-sql: no committed offsets yet",
        "p.mic.orders.enriched: 3 records but no consumer group has committed on it",
    ]
    assert still_pending([group("streams", (0, 0.0))], [], {"p.mic.orders": 5, "p.x": 0}) == []


def test_json_document_carries_totals_verdict_and_thresholds() -> None:
    snapshot = StatusSnapshot(
        taken_at=NOW, groups=(group("g", (3, 1.25), (4, 0.5)),), dead_letters_last_hour={"malformed": 2}
    )
    thresholds = Thresholds(max_lag_records=5)
    document = snapshot_to_json(snapshot, evaluate(snapshot, thresholds), thresholds)
    assert document["verdict"] == "DEGRADED"
    assert document["groups"][0]["lag_records"] == 7
    assert document["groups"][0]["lag_seconds"] == 1.25
    assert document["groups"][0]["partitions"][1] == {
        "topic": "p.mic.orders",
        "partition": 1,
        "committed": 10,
        "end": 14,
        "lag_records": 4,
        "lag_seconds": 0.5,
    }
    assert document["dead_letters_last_hour"] == {"malformed": 2}
    assert document["thresholds"]["max_lag_records"] == 5


def test_text_report_lists_verdict_groups_dead_letters_and_freshness() -> None:
    from mic_pipeline.ops.status import render_text

    snapshot = StatusSnapshot(
        taken_at=NOW,
        groups=(group("sink", (6, 12.0)),),
        dead_letters_last_hour={"malformed": 2},
        freshness=(FamilyFreshness("order", "order_events", None, None),),
    )
    text = render_text(snapshot, evaluate(snapshot, Thresholds(max_lag_records=5)))
    lines = text.splitlines()
    assert lines[:2] == ["verdict: DEGRADED", "  - group sink: lag 6 records (> 5)"]
    assert "  sink: lag 6 records, oldest unprocessed 12.0 s; ok (commit interval 5 s, limit 65 s)" in lines
    assert "dead letters (last hour): 2" in lines
    assert any(line.startswith("  order_events") and line.endswith("nothing landed") for line in lines)
    assert lines[-1] == "quality gate: no results recorded yet"


def test_not_ready_components_degrade_with_their_reasons_then_fail_after_the_threshold() -> None:
    now = NOW.timestamp()
    disk = ComponentHealth(
        "sink-parquet",
        "http://h:9102/health/ready",
        False,
        reasons=("disk full: [Errno 28] No space left on device",),
        since=now - 42,
    )
    ready = ComponentHealth("sink-sql", "http://h:9101/health/ready", True, since=now - 500)
    snapshot = StatusSnapshot(taken_at=NOW, components=(disk, ready))
    assessment = evaluate(snapshot, Thresholds())
    assert assessment.verdict is Verdict.DEGRADED
    assert assessment.reasons == (
        "sink-parquet: not ready for 42 s: disk full: [Errno 28] No space left on device",
    )
    long_ago = ComponentHealth(
        "sink-sql", "u", False, reasons=("database unavailable: refused", "write error: x"), since=now - 301
    )
    assessment = evaluate(StatusSnapshot(taken_at=NOW, components=(long_ago, disk)), Thresholds())
    assert assessment.verdict is Verdict.FAILING
    assert assessment.reasons == (
        "sink-sql: not ready for 301 s (> 300 s): database unavailable: refused; write error: x",
        "sink-parquet: not ready for 42 s: disk full: [Errno 28] No space left on device",
    )
    no_limit = Thresholds(failing_not_ready_seconds=None)
    snapshot = StatusSnapshot(taken_at=NOW, components=(long_ago,))
    assert evaluate(snapshot, no_limit).verdict is Verdict.DEGRADED


def test_an_unreachable_health_endpoint_degrades_and_is_reported_as_such() -> None:
    down = ComponentHealth(
        "sink-sql", "http://h:9101/health/ready", False, error="health endpoint unreachable (refused)"
    )
    snapshot = StatusSnapshot(taken_at=NOW, components=(down,))
    assessment = evaluate(snapshot, Thresholds())
    assert (assessment.verdict, assessment.reasons) == (
        Verdict.DEGRADED,
        ("sink-sql: health endpoint unreachable (refused)",),
    )
    document = snapshot_to_json(snapshot, assessment, Thresholds())
    assert document["components"] == [
        {
            "component": "sink-sql",
            "url": "http://h:9101/health/ready",
            "status": "unknown",
            "reasons": [],
            "since": None,
            "last_progress": None,
            "not_ready_seconds": None,
            "error": "health endpoint unreachable (refused)",
        }
    ]
    assert document["thresholds"]["failing_not_ready_seconds"] == 300.0


def test_text_report_lists_components_and_escapes_what_they_say() -> None:
    from mic_pipeline.ops.status import render_text

    now = NOW.timestamp()
    components = (
        ComponentHealth("streams", "u1", True, since=now - 900, last_progress=now - 3),
        ComponentHealth(
            "sink-parquet", "u2", False, reasons=("write error: \x1b]0;pwned\x07\n!",), since=now - 7
        ),
    )
    snapshot = StatusSnapshot(taken_at=NOW, components=components)
    text = render_text(snapshot, evaluate(snapshot, Thresholds()))
    lines = text.splitlines()
    escaped = "sink-parquet: not ready for 7 s: write error: \\x1b]0;pwned\\x07\\n!"
    assert lines[:2] == ["verdict: DEGRADED", f"  - {escaped}"]
    assert lines[3:6] == ["components:", "  streams: ready (last progress 3 s ago)", f"  {escaped}"]
    assert "\x1b" not in text and "\x07" not in text
