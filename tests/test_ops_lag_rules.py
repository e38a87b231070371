"""The lag rules (Burrow's model in seconds, `mic_pipeline.ops.lag_rules`) and the freshness rule,
without I/O: a batching consumer's saw-tooth is OK, a stopped one is DEGRADED then FAILING, a slow
one is behind or growing, and record counts matter only when asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mic_pipeline.ops.lag_rules import (
    COMMIT_INTERVALS,
    GROUP_TOPICS,
    commit_interval,
    group_topics,
    judge_group,
)
from mic_pipeline.ops.verdict import (
    FamilyFreshness,
    GroupStatus,
    LagSample,
    PartitionLag,
    StatusSnapshot,
    Thresholds,
    Verdict,
    evaluate,
    snapshot_to_json,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SINK = "run1.mic-sink-parquet"
TOPIC = "run1.mic.orders.enriched"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def status(committed: int, end: int, oldest_s: float = 0.0, group: str = SINK) -> GroupStatus:
    return GroupStatus(group, (PartitionLag(TOPIC, 0, committed, end, end - committed, oldest_s),))


def snapshot(samples: list[tuple[float, int, int]], oldest_s: float, group: str = SINK) -> StatusSnapshot:
    """Samples (seconds after T0, committed, end), the last one current with its oldest record's age."""
    *earlier, (now, committed, end) = samples
    history = tuple(LagSample(at(t), (status(c, e, group=group),)) for t, c, e in earlier)
    current = (status(committed, end, oldest_s, group),)
    return StatusSnapshot(taken_at=at(now), groups=current, history=history)


MARGIN_30 = Thresholds(lag_margin_seconds=30.0)
"""The figures below use a 30 s margin (the default is 60 s: `test_the_default_margin_...`)."""


def verdict_of(
    snap: StatusSnapshot, thresholds: Thresholds | None = None
) -> tuple[Verdict, tuple[str, ...]]:
    assessment = evaluate(snap, thresholds or MARGIN_30)
    return assessment.verdict, assessment.reasons


def test_commit_intervals_are_the_components_own_defaults() -> None:
    """The known intervals are the stream's checkpoint interval and the sinks' batch wait (defaults)."""
    import argparse

    from sinks import cli as sinks_cli
    from streams.settings import StreamSettings

    parser = argparse.ArgumentParser()
    sinks_cli.register(parser.add_subparsers())
    sink_args = parser.parse_args(["sink", "sql"])
    assert {
        "mic-streams": StreamSettings.__dataclass_fields__["commit_s"].default,
        "mic-sink-sql": sink_args.max_batch_wait,
        "mic-sink-parquet": sink_args.max_batch_wait,
    } == COMMIT_INTERVALS
    assert commit_interval("demo1.mic-sink-sql", {}) == 2.0
    assert commit_interval("demo1.mic-streams", {}) == 1.0
    assert commit_interval("analytics", {}) == 5.0
    assert commit_interval("analytics", {"analytics": 60.0}) == 60.0


def test_the_known_groups_topics_are_what_the_stream_and_the_sinks_consume() -> None:
    from mic_pipeline.config import Settings
    from schemas.topics import Family
    from sinks.app import sink_topics

    settings = Settings(topic_prefix="p.")
    assert set(GROUP_TOPICS["mic-streams"]) == {family.topic for family in Family}  # streams.worker
    for kind in ("sql", "parquet"):
        assert [settings.topic(t) for t in GROUP_TOPICS[f"mic-sink-{kind}"]] == sink_topics(settings, kind)
    assert group_topics("p.mic-sink-sql") == GROUP_TOPICS["mic-sink-sql"]
    assert group_topics("analytics") is None


def test_a_batching_sink_at_a_steady_rate_is_ok_whatever_its_record_count() -> None:
    # 200 records/s, a commit every ~2.5 s: 1,015 records behind at a peak, the oldest 4.9 s old
    samples = [(0.0, 1000, 1300), (2.5, 1500, 1800), (5.0, 2000, 2515)]
    assert verdict_of(snapshot(samples, oldest_s=4.9)) == (Verdict.OK, ())
    # record counts only when asked for
    assert verdict_of(snapshot(samples, 4.9), Thresholds(max_lag_records=1000)) == (Verdict.OK, ())
    assert verdict_of(snapshot(samples, 4.9), Thresholds(max_lag_records=500)) == (
        Verdict.DEGRADED,
        (f"group {SINK}: lag 515 records (> 500)",),
    )


def test_a_stopped_sink_is_ok_within_its_margin_then_degraded_then_failing() -> None:
    # no commit for 5 s while records wait: a slow batch is within 2 s + 30 s
    samples = [(0.0, 2000, 2100), (2.5, 2000, 2600), (5.0, 2000, 3100)]
    assert verdict_of(snapshot(samples, oldest_s=5.5)) == (Verdict.OK, ())
    # the oldest record waits longer than 2 s + 30 s: not committing
    samples = [(28.0, 2000, 7700), (30.5, 2000, 8200), (33.0, 2000, 8700)]
    verdict, reasons = verdict_of(snapshot(samples, oldest_s=33.4))
    assert verdict is Verdict.DEGRADED
    assert reasons == (
        f"group {SINK}: not committing: {TOPIC}[0] committed offset 2000 unchanged for 5 s with 6700 "
        "records waiting, the oldest 33 s old (> 32 s = commit interval 2 s + margin 30 s)",
    )
    # longer than 2 s + 2 x 30 s: commits stopped
    samples = [(58.0, 2000, 13700), (60.5, 2000, 14200), (63.0, 2000, 14700)]
    verdict, reasons = verdict_of(snapshot(samples, oldest_s=63.4))
    assert verdict is Verdict.FAILING
    assert reasons == (
        f"group {SINK}: commits stopped: {TOPIC}[0] committed offset 2000 unchanged for 5 s with "
        "12700 records waiting, the oldest 63 s old (> 62 s = commit interval 2 s + 2 x margin 30 s)",
    )
    assert verdict_of(snapshot(samples, 63.4), Thresholds(lag_margin_seconds=40))[0] is Verdict.DEGRADED


def test_the_default_margin_lets_a_cold_first_batch_stall_for_a_minute() -> None:
    """The quality gate's first run (Great Expectations loading) took 24 s without a commit, the
    oldest record 32 s old, in a quick demo on an overloaded machine: not a problem by default."""
    assert Thresholds().lag_margin_seconds == 60.0
    samples = [(0.0, 10, 60), (12.0, 10, 70), (24.0, 10, 81)]
    assert evaluate(snapshot(samples, oldest_s=32.0), Thresholds()).verdict is Verdict.OK
    assert evaluate(snapshot(samples, oldest_s=62.5), Thresholds()).verdict is Verdict.DEGRADED
    assert evaluate(snapshot(samples, oldest_s=122.5), Thresholds()).verdict is Verdict.FAILING


def test_a_window_shorter_than_the_interval_plus_slack_does_not_judge_commits() -> None:
    samples = [(0.0, 2000, 2100), (4.9, 2000, 3080)]
    assert verdict_of(snapshot(samples, oldest_s=5.4)) == (Verdict.OK, ())
    # one sample only (status --window 0): no stall rule, only the age
    assert verdict_of(snapshot([(0.0, 2000, 3000)], oldest_s=10.0)) == (Verdict.OK, ())
    assert verdict_of(snapshot([(0.0, 2000, 3000)], oldest_s=40.0))[0] is Verdict.DEGRADED


def test_a_slow_consumer_is_behind_and_a_growing_lag_is_seen_over_a_long_window() -> None:
    behind = [(0.0, 1000, 9000), (2.5, 1400, 9500), (5.0, 1800, 10000)]
    verdict, reasons = verdict_of(snapshot(behind, oldest_s=40.0))
    assert verdict is Verdict.DEGRADED
    assert reasons == (
        f"group {SINK}: behind: {TOPIC}[0] oldest unprocessed record is 40 s old (> 32 s = commit "
        "interval 2 s + margin 30 s) while commits move",
    )
    # commits move, the oldest record is young, but the lag climbs above its saw-tooth over 20 s
    growing = [(t, 1000 + 150 * i, 1300 + 200 * i + 40 * i * i) for i, t in enumerate(range(0, 21, 3))]
    assert verdict_of(snapshot(growing, oldest_s=8.0)) == (Verdict.OK, ())  # not half way to behind
    verdict, reasons = verdict_of(snapshot(growing, oldest_s=20.0))
    assert verdict is Verdict.DEGRADED
    assert reasons[0].startswith(f"group {SINK}: lag growing: {TOPIC}[0] from at most ")
    # a saw-tooth of the same length is not growth, and neither is a lag that touched zero
    saw = [
        (t, 1000 + 500 * i, 1000 + 500 * i + (100 if i % 2 else 480)) for i, t in enumerate(range(0, 21, 3))
    ]
    assert verdict_of(snapshot(saw, oldest_s=2.4)) == (Verdict.OK, ())
    touched = [(0.0, 500, 500), *growing[1:]]
    assert verdict_of(snapshot(touched, oldest_s=20.0)) == (Verdict.OK, ())


def test_more_records_waiting_at_a_consumer_that_keeps_up_is_not_growth() -> None:
    """The quick demo's drain (CI, 2026-11-30): the stream released the records it held, the Parquet
    sink's lag rose from 72 to 144 records over 17 s while it committed every cycle -- a rate change,
    not falling behind: OK while its oldest record is younger than a commit cycle, or its age does not
    rise; DEGRADED once the age climbs past a cycle with the records."""
    rising = [(t, 1000 + 60 * i, 1072 + 72 * i) for i, t in enumerate(range(0, 19, 3))]
    assert verdict_of(snapshot(rising, oldest_s=1.8)) == (Verdict.OK, ())
    assert verdict_of(snapshot(rising, oldest_s=5.0)) == (Verdict.OK, ())  # = 2 s + 3 s slack

    def measured(ages: list[float]) -> StatusSnapshot:
        *earlier, (now, committed, end) = rising
        history = tuple(
            LagSample(at(t), (status(c, e, oldest_s=age),))
            for (t, c, e), age in zip(earlier, ages, strict=False)
        )
        return StatusSnapshot(taken_at=at(now), groups=(status(committed, end, ages[-1]),), history=history)

    # measured ages that stay within the saw-tooth's height: a slow batch now, not a trend
    assert verdict_of(measured([1.0, 4.5, 1.2, 5.5, 1.1, 4.0, 6.0])) == (Verdict.OK, ())
    # one slow batch during the drain (CI, PostgreSQL demo): no commit on the partition for 17 s, 128
    # then 130 records waiting, the oldest record's age rising -- the stall rules judge it (margin)
    stalled = [(t, 5000, 5128 + (i > 3) * 2) for i, t in enumerate(range(0, 19, 3))]
    history = tuple(
        LagSample(at(t), (status(c, e, oldest_s=float(t)),)) for t, c, e in stalled[:-1]
    )
    slow_batch = StatusSnapshot(taken_at=at(18), groups=(status(5000, 5130, 17.0),), history=history)
    assert verdict_of(slow_batch) == (Verdict.OK, ())
    # a burst being caught up: ages rising but far from `behind` (CI's demos, third run: 84 -> 119
    # records over 14 s, the oldest 11 s old) -- OK with a 30 s margin and with the default
    assert verdict_of(measured([1.0, 1.5, 2.5, 3.5, 5.0, 6.5, 8.0])) == (Verdict.OK, ())
    assert verdict_of(measured([3.0, 4.0, 5.5, 7.0, 8.5, 10.0, 11.0])) == (Verdict.OK, ())
    assert evaluate(measured([3.0, 4.0, 5.5, 7.0, 8.5, 10.0, 11.0]), Thresholds()).verdict is Verdict.OK
    # ages climbing with wall time past half the margin: the consumer cannot commit up to recent records
    verdict, reasons = verdict_of(measured([4.0, 6.0, 8.5, 11.0, 14.0, 17.0, 20.0]))
    assert verdict is Verdict.DEGRADED
    assert reasons == (
        f"group {SINK}: lag growing: {TOPIC}[0] from at most 96 to 144 records over 18 s, "
        "the oldest 20 s old",
    )


def test_far_behind_fails_even_while_commits_move() -> None:
    samples = [(0.0, 1000, 90000), (2.5, 1400, 90500), (5.0, 1800, 91000)]
    verdict, reasons = verdict_of(snapshot(samples, oldest_s=901.0))
    assert verdict is Verdict.FAILING
    assert reasons == (
        f"group {SINK}: far behind: {TOPIC}[0] oldest unprocessed record is 901 s old (> 900 s)",
    )


def test_the_json_document_names_each_group_state_interval_and_window() -> None:
    samples = [(0.0, 2000, 2100), (2.5, 2000, 2600), (5.0, 2000, 3100)]
    snap = snapshot(samples, oldest_s=40.0)
    thresholds = MARGIN_30
    document = snapshot_to_json(snap, evaluate(snap, thresholds), thresholds)
    group = document["groups"][0]
    assert (group["state"], group["commit_interval_s"], group["lag_limit_s"]) == (
        "not committing",
        2.0,
        32.0,
    )
    assert document["window"] == {"samples": 3, "span_seconds": 5.0}
    assert document["thresholds"]["lag_margin_seconds"] == 30.0
    judgement = judge_group(snap.groups[0], snap.taken_at, snap.history, thresholds.lag_limits)
    assert (judgement.samples, judgement.window_s) == (3, 5.0)


def test_freshness_alarms_when_records_wait_for_a_sink_longer_than_the_threshold() -> None:
    landed = at(0)
    quiet = FamilyFreshness("order", "order_events", landed, 600.0, "sql", inputs_since=0)
    assert verdict_of(StatusSnapshot(taken_at=at(600), freshness=(quiet,))) == (Verdict.OK, ())
    flowing = FamilyFreshness("order", "order_events", landed, 2.0, "parquet", 400, 3.0)
    assert verdict_of(StatusSnapshot(taken_at=at(600), freshness=(flowing,))) == (Verdict.OK, ())
    stale = FamilyFreshness("order", "order_events", landed, 150.0, "parquet", 30000, 149.0)
    assert verdict_of(StatusSnapshot(taken_at=at(600), freshness=(stale,))) == (
        Verdict.DEGRADED,
        (
            "order_events (parquet): newest row landed 150 s ago while 30000 records are on their way, "
            "the oldest waiting 149 s (> 120 s)",
        ),
    )
    never = FamilyFreshness("member", "member_events", None, None, "sql", 12, 130.0)
    reasons = verdict_of(StatusSnapshot(taken_at=at(600), freshness=(never,)))[1]
    assert reasons == (
        "member_events (sql): nothing landed yet while 12 records are on their way, the oldest "
        "waiting 130 s (> 120 s)",
    )
    off = Thresholds(max_freshness_seconds=None)
    assert verdict_of(StatusSnapshot(taken_at=at(600), freshness=(stale,)), off) == (Verdict.OK, ())


def test_thresholds_read_the_margin_window_and_commit_intervals_from_the_environment() -> None:
    from mic_pipeline.config import ConfigError

    thresholds = Thresholds.from_env(
        {
            "MIC_STATUS_LAG_MARGIN_SECONDS": "10",
            "MIC_STATUS_WINDOW_SECONDS": "8",
            "MIC_STATUS_COMMIT_INTERVALS": "analytics=60, etl=0.5",
        }
    )
    assert (thresholds.lag_margin_seconds, thresholds.window_seconds) == (10.0, 8.0)
    assert thresholds.intervals == {"analytics": 60.0, "etl": 0.5}
    assert Thresholds().max_lag_records is None and Thresholds().max_freshness_seconds == 120.0
    with pytest.raises(ConfigError, match="INTERVALS='analytics': 'analytics' is not GROUP=SECONDS"):
        Thresholds.from_env({"MIC_STATUS_COMMIT_INTERVALS": "analytics"})
    with pytest.raises(ConfigError, match="cannot be off"):
        Thresholds.from_env({"MIC_STATUS_LAG_MARGIN_SECONDS": "off"})
