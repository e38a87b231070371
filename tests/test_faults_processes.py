"""The pipeline's own processes failing on the 3-broker cluster, mid-traffic: kill -9 of the stream
worker, of the SQL sink and of the Parquet sink, each restarted; and a rebalance storm (a second
stream worker joining and leaving gracefully, over and over).

The brokers stay healthy; the producer sends at a steady rate across every fault. Each test ends
with the reconciliation (`faults_reconcile`): every acknowledged record exactly once in the
warehouse (SQL = Parquet) or among the dead letters, and nothing left behind by a killed process.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from faults_pipeline import Pipeline, Proc
from faults_reconcile import ParquetReader, sql_state
from faults_steps import (
    assert_every_record_acknowledged_and_accounted,
    owned,
    stop_sending_and_reconcile,
    stream_outputs,
    wait_for_acknowledgements,
    wait_for_growth,
)
from faults_traffic import Traffic
from streams_kafka import wait_until

from mic_pipeline.config import Settings

if TYPE_CHECKING:
    from faults_cluster import Cluster

pytest_plugins = ["faults_cluster"]
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

RATE = 150
STORM_CYCLES = 4
"""Joins and graceful leaves of the second worker: about two minutes of rebalances here (six took
200 s of the fault stage's 30-minute budget in CI)."""
"""Records/s of the producer during the faults."""


def _sql_rows(settings: Settings) -> int:
    return sum(sql_state(settings.database_url)[0].values())


def _parquet_rows(parquet: ParquetReader) -> int:
    return sum(parquet.event_ids().values())


def test_kill_9_of_the_worker_and_of_each_sink_mid_traffic_each_restarted_reconciles(
    cluster: Cluster, faults_settings: Settings, tmp_path: Path
) -> None:
    settings = faults_settings
    traffic = Traffic(settings, seed=53)
    batch = traffic.take(20_000, hostile=40)  # more than the faults need: the sender is stopped after
    pipeline = Pipeline(settings, tmp_path / "logs")
    outputs = partial(stream_outputs, settings)
    sql_rows = partial(_sql_rows, settings)
    parquet_rows = partial(_parquet_rows, ParquetReader(settings.warehouse_dir))
    at_kill: dict[str, int] = {}
    sender = None
    try:
        worker, sql, parquet_sink = pipeline.start_all()
        sender = traffic.send_in_background(batch, rate=RATE)

        # the stream worker, once it has written outputs; the restarted one must carry on
        at_kill["worker"] = wait_for_growth(outputs, 500, "stream outputs", pipeline)
        killed_worker = worker
        worker.kill()
        worker = pipeline.restart(worker)
        wait_for_growth(outputs, 300, "stream outputs after the worker's restart", pipeline)

        # each sink while rows land (the restarted ones' work is what the reconciliation checks)
        at_kill["sql"] = wait_for_growth(sql_rows, 100, "SQL rows", pipeline)
        killed_sql = sql
        sql.kill()
        sql = pipeline.restart(sql)
        at_kill["parquet"] = wait_for_growth(parquet_rows, 100, "Parquet rows", pipeline)
        killed_parquet = parquet_sink
        parquet_sink.kill()
        parquet_sink = pipeline.restart(parquet_sink)
        wait_for_acknowledgements(traffic, 300, "after the last restart", pipeline)

        counts = stop_sending_and_reconcile(sender, pipeline, traffic, worker, {"rows_at_kill": at_kill})
    finally:
        if sender is not None:  # a failed test: the producer thread must not outlive it
            sender.stopping.set()
        pipeline.close()
    assert [proc.process.returncode for proc in (killed_worker, killed_sql, killed_parquet)] == [-9, -9, -9]
    assert_every_record_acknowledged_and_accounted(traffic, counts)
    assert counts.landed >= at_kill["parquet"]  # rows in Parquet at its kill


def test_a_rebalance_storm_of_a_second_worker_joining_and_leaving_reconciles(
    cluster: Cluster, faults_settings: Settings, tmp_path: Path
) -> None:
    settings = faults_settings
    traffic = Traffic(settings, seed=59)
    batch = traffic.take(40_000, hostile=40)  # more than the storm needs: the sender is stopped after
    pipeline = Pipeline(settings, tmp_path / "logs")
    every = list(range(settings.partitions))
    outputs = partial(stream_outputs, settings)
    cycles: list[tuple[list[int], int]] = []
    sender = None
    try:
        worker, _, _ = pipeline.start_all()
        sender = traffic.send_in_background(batch, rate=RATE)
        wait_for_growth(outputs, 300, "stream outputs", pipeline)
        wait_until(lambda: sorted(owned(worker)) == every, 60, "the first worker owns every partition")
        for cycle in range(STORM_CYCLES):
            second = pipeline.start_worker()
            taken: list[int] = []

            def shared(second: Proc = second, taken: list[int] = taken) -> bool:
                pipeline.check_alive()
                taken[:] = owned(second)
                return bool(taken)

            wait_until(shared, 60, f"cycle {cycle}: the second worker was given no partition")
            status = second.stop()  # graceful: its partitions go back to the first worker
            cycles.append((sorted(taken), status))
            assert status == 0, f"cycle {cycle}: the second worker exited with {status}:\n{second.tail()}"
            wait_until(lambda: sorted(owned(worker)) == every, 60,
                       f"cycle {cycle}: the first worker did not take every partition back")
            wait_for_growth(outputs, 100, f"cycle {cycle}: stream outputs", pipeline)
        counts = stop_sending_and_reconcile(sender, pipeline, traffic, worker, {"cycles": cycles})
    finally:
        if sender is not None:  # a failed test: the producer thread must not outlive it
            sender.stopping.set()
        pipeline.close()
    assert len(cycles) == STORM_CYCLES
    assert_every_record_acknowledged_and_accounted(traffic, counts)
