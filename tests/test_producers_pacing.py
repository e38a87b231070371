"""The paced send loop of `simulate`, without Kafka."""

from __future__ import annotations

import time

import pytest

from producers.pacing import run_paced
from producers.simulator import SimRecord, SimulationConfig, generate


def test_rate_is_honoured() -> None:
    sent: list[SimRecord] = []
    records = generate(SimulationConfig(seed=1, scale=0.02))
    summary = run_paced(records, sent.append, rate=2000, duration_s=1.0)
    assert len(sent) == summary.records == 2000
    assert summary.kept_up
    assert summary.elapsed_s == pytest.approx(1.0, abs=0.05)
    assert summary.achieved_rate == pytest.approx(2000, rel=0.05)


def test_records_are_spread_over_the_duration() -> None:
    stamps: list[float] = []
    start = time.monotonic()
    run_paced(
        generate(SimulationConfig(seed=1, scale=0.02)),
        lambda _r: stamps.append(time.monotonic()),
        rate=400,
        duration_s=1.0,
    )
    first_half = sum(1 for t in stamps if t - start < 0.5)
    assert first_half == pytest.approx(200, abs=20)


def test_a_stall_inside_a_burst_that_runs_past_the_end_is_reported_as_falling_behind() -> None:
    """A send that stalls past the run's end inside a burst (a broker outage, a loaded machine): the
    check after the burst judged the time before it, so the run read "kept up" (CI: 430 of 5,000
    records in 1.05 s, kept_up True). Fake clock: every send takes 1 ms, the 20th one 1.5 s."""
    now = [0.0]
    sends = [0]

    def send(_record: SimRecord) -> None:
        sends[0] += 1
        now[0] += 1.5 if sends[0] == 20 else 0.001

    def sleep(seconds: float) -> None:
        now[0] += seconds

    warnings: list[str] = []
    summary = run_paced(generate(SimulationConfig(seed=1, scale=0.02)), send, rate=1000, duration_s=1.0,
                        warn=warnings.append, clock=lambda: now[0], sleep=sleep)
    assert summary.records < 100 and not summary.kept_up and len(warnings) == 1


def test_falling_behind_is_reported() -> None:
    warnings: list[str] = []
    summary = run_paced(
        generate(SimulationConfig(seed=1, scale=0.02)),
        lambda _r: time.sleep(0.002),
        rate=5000,
        duration_s=1.0,
        warn=warnings.append,
    )
    assert not summary.kept_up
    assert len(warnings) == 1 and "cannot keep up" in warnings[0]
    assert summary.records < 1000
    assert summary.elapsed_s == pytest.approx(1.0, abs=0.1)
    assert "could not keep up" in summary.report()


def test_summary_counts_types_reasons_and_duplicates() -> None:
    progress_calls: list[int] = []
    summary = run_paced(
        generate(SimulationConfig(seed=1, scale=0.02, invalid_fraction=0.2)),
        lambda _r: None,
        rate=0,
        duration_s=0.3,
        progress=lambda s: progress_calls.append(s.records),
        progress_every_s=0.1,
    )
    assert summary.records > 1000
    assert len(progress_calls) >= 2
    invalid = sum(summary.invalid_by_reason.values())
    assert invalid == pytest.approx(0.2 * summary.records, abs=2)
    assert len(summary.invalid_by_reason) == 6
    assert summary.duplicates == pytest.approx(0.04 * summary.records, abs=2)
    assert sum(summary.valid_by_type.values()) + invalid + summary.duplicates == summary.records
    report = summary.report()
    assert "unthrottled" in report and "member.joined" in report and "malformed" in report


def test_progress_may_abort_the_run() -> None:
    def fail(_summary: object) -> None:
        raise RuntimeError("delivery failed")

    with pytest.raises(RuntimeError, match="delivery failed"):
        run_paced(
            generate(SimulationConfig(seed=1, scale=0.02)),
            lambda _r: None,
            rate=1000,
            duration_s=2,
            progress=fail,
            progress_every_s=0.1,
        )


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        run_paced(iter([]), lambda _r: None, rate=-1, duration_s=1)
