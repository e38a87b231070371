"""The demo's reconciliation as plain functions: ground-truth counting and the verdict's problems."""

from __future__ import annotations

from mic_pipeline.ops.reconcile import Expected, Landed, expected_from, format_summary, reconcile
from producers.ground_truth import GroundTruthRecord


def truth(seq: int, expected: str, event_type: str | None = "order.placed") -> GroundTruthRecord:
    return GroundTruthRecord(seq, "mic.orders", None, None, event_type, expected, "0" * 64)


EXPECTED = Expected(
    produced=10,
    valid_by_family={"member": 3, "order": 3},
    dead_letters_by_reason={"malformed": 2, "unknown_company": 1},
    duplicates=1,
)
LANDED = Landed(
    sql_by_family={"member": 3, "order": 3},
    parquet_by_family={"member": 3, "order": 3},
    dead_letters_by_reason={"malformed": 2, "unknown_company": 1},
    duplicates_dropped=1,
)


def test_expected_counts_valid_records_per_family_dead_letters_per_reason_and_duplicates() -> None:
    records = [
        truth(0, "valid", "member.joined"),
        truth(1, "valid"),
        truth(2, "valid"),
        truth(3, "duplicate"),
        truth(4, "malformed", None),
        truth(5, "unknown_company"),
    ]
    assert expected_from(records) == Expected(
        6, {"member": 1, "order": 2}, {"malformed": 1, "unknown_company": 1}, 1
    )


def test_a_complete_run_reconciles() -> None:
    verdict = reconcile(EXPECTED, LANDED)
    assert verdict.ok and verdict.problems == ()
    assert format_summary(EXPECTED, LANDED, verdict)[-1].startswith(
        "RECONCILED: 10 produced = 6 landed + 3 dead letters + 1 duplicates"
    )


def test_every_discrepancy_is_named() -> None:
    landed = Landed(
        sql_by_family={"member": 3, "order": 2},
        parquet_by_family={"member": 3, "order": 3},
        dead_letters_by_reason={"malformed": 1, "unknown_company": 1, "schema_violation": 1},
        duplicates_dropped=None,
        quarantined_batches=2,
    )
    assert reconcile(EXPECTED, landed).problems == (
        "order_events: 3 valid produced, 2 in SQL, 3 in Parquet",
        "dead letters malformed: 2 expected, 1 landed",
        "dead letters schema_violation: 0 expected, 1 landed",
        "duplicates dropped: the stream's aggregates could not be read",
        "2 batches quarantined by the quality gate",
        "10 produced but 8 accounted for (5 landed + 3 dead letters + 0 duplicates)",
    )
    summary = format_summary(EXPECTED, landed, reconcile(EXPECTED, landed))
    assert "NOT RECONCILED:" in summary


def test_quarantined_rows_are_accounted_for_in_each_sink() -> None:
    landed = Landed(
        sql_by_family={"member": 3, "order": 2},
        parquet_by_family={"member": 3, "order": 2},
        dead_letters_by_reason=LANDED.dead_letters_by_reason,
        duplicates_dropped=1,
        sql_quarantined_by_family={"order": 1},
        parquet_quarantined_by_family={"order": 1},
    )
    verdict = reconcile(EXPECTED, landed)
    assert verdict.ok, verdict.problems
    assert format_summary(EXPECTED, landed, verdict)[-1].startswith(
        "RECONCILED: 10 produced = 5 landed + 3 dead letters + 1 duplicates + 1 quarantined"
    )
    one_sided = Landed(
        landed.sql_by_family,
        {"member": 3, "order": 3},
        landed.dead_letters_by_reason,
        1,
        sql_quarantined_by_family={"order": 1},
        parquet_quarantined_by_family={"order": 1},
    )
    assert reconcile(EXPECTED, one_sided).problems == (
        "order_events: 3 valid produced, 2 in SQL, 3 in Parquet (quarantined: 1 SQL, 1 Parquet)",
    )
    uncounted = Landed(landed.sql_by_family, landed.parquet_by_family, landed.dead_letters_by_reason, 1)
    assert reconcile(EXPECTED, uncounted).problems == (
        "order_events: 3 valid produced, 2 in SQL, 2 in Parquet",
        "10 produced but 9 accounted for (5 landed + 3 dead letters + 1 duplicates)",
    )


def test_duplicates_counted_twice_break_the_equation() -> None:
    landed = Landed(LANDED.sql_by_family, LANDED.parquet_by_family, LANDED.dead_letters_by_reason, 2)
    assert reconcile(EXPECTED, landed).problems == (
        "duplicates: 1 re-sent, 2 dropped by the stream",
        "10 produced but 11 accounted for (6 landed + 3 dead letters + 2 duplicates)",
    )


def test_drain_progress_is_summed_per_consumer_group() -> None:
    from mic_pipeline.ops.demo_run import summarize_pending

    pending = [
        "p.mic-sink-parquet p.mic.orders.enriched[0]: 400 records behind (committed 1, end 401)",
        "p.mic-sink-parquet p.mic.orders.enriched[1]: 51 records behind (committed 1, end 52)",
        "p.mic-streams p.mic.orders[1]: 1200 records behind (committed 1, end 1201)",
        "p.mic.orders: 3 records but no consumer group has committed on it",
    ]
    assert summarize_pending(pending, "p.") == (
        "mic-sink-parquet 451 records behind; mic-streams 1,200 records behind; "
        "mic.orders: 3 records but no consumer group has committed on it"
    )
