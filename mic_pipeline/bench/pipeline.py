"""End to end: backlog -> stream worker -> both sinks -> every row in SQL and Parquet; then latency.

One worker and both sinks (quality gate on, SQLite warehouse) start together on a fresh prefix
whose input topics already hold the backlog. Done = every valid event of the backlog is a row in
the SQL event tables and the Parquet sink's group has committed every enriched record; events/s =
backlog records / time from the worker's first commit to done (and from the processes' start).

Latency, on the same running processes once the backlog is in: fresh simulator records (the stream
after the backlog, with its invalid records and duplicates) are published at a fixed offered rate
(`producers.pacing.run_paced`, the project's publisher); each valid event's production time is
taken just before it is handed to the producer; a poller reads the SQL event tables' new rows
(`rowid` above the last seen) every `poll_interval_s` and stamps each event id when first seen.
Latency = seen - produced: an upper bound, late by at most one poll period (interval + query time,
both reported). A rate holds when every event landed, p99 <= `hold_p99_s` and the producer achieved
>= 95% of the offered rate.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mic_pipeline.bench.context import Context, sink_env, watch_commits
from mic_pipeline.bench.kafka import Offsets, delete_stage, publish
from mic_pipeline.bench.procs import BenchError, Children, python_module
from mic_pipeline.bench.stages import count_parquet_rows, count_sql_rows, start_workers
from mic_pipeline.config import Settings
from producers.ground_truth import VALID
from producers.simulator import SimRecord
from schemas.topics import Family

RAMP_FACTOR = 1.5
RAMP_LIMIT = 50_000.0
LANDING_GRACE_S = 30.0


def sqlite_path(settings: Settings) -> Path:
    prefix = "sqlite:///"
    if not settings.database_url.startswith(prefix):
        raise ValueError(f"end to end runs on SQLite, not {settings.database_url}")
    return Path(settings.database_url[len(prefix) :])


class Warehouse:
    """Read-only view of the SQLite warehouse: row counts and new event ids since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self.last_rowid = {family.table: 0 for family in Family}

    def _open(self) -> sqlite3.Connection | None:
        if self._connection is None and self.path.exists():
            self._connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        return self._connection

    def _tables(self, connection: sqlite3.Connection) -> set[str]:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def event_rows(self) -> int:
        """Rows in the four event tables (0 before the sink created them)."""
        connection = self._open()
        if connection is None:
            return 0
        present = self._tables(connection)
        return sum(
            connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in self.last_rowid
            if table in present
        )

    def skip_existing(self) -> None:
        """Start `new_event_ids` after the rows there now."""
        connection = self._open()
        assert connection is not None
        for table in self.last_rowid:
            self.last_rowid[table] = connection.execute(
                f"SELECT coalesce(max(rowid), 0) FROM {table}"
            ).fetchone()[0]

    def new_event_ids(self) -> list[str]:
        """Event ids of the rows landed since the last call."""
        connection = self._open()
        assert connection is not None
        ids: list[str] = []
        for table, last in self.last_rowid.items():
            rows = connection.execute(
                f"SELECT rowid, event_id FROM {table} WHERE rowid > ?", (last,)
            ).fetchall()
            if rows:
                self.last_rowid[table] = max(row[0] for row in rows)
                ids.extend(str(row[1]) for row in rows)
        return ids

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def end_to_end(ctx: Context) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The end-to-end figure and the latency runs (see the module docstring)."""
    stage = "end_to_end"
    settings = ctx.settings(stage)
    published, publish_s = publish(settings, ctx.backlog.records)
    app_id = settings.topic("mic-streams")
    inputs = [settings.topic(family.topic) for family in Family]
    enriched = [settings.topic(family.enriched_topic) for family in Family]
    expected = ctx.backlog.valid_total
    warehouse = Warehouse(sqlite_path(settings))
    try:
        with ctx.children(stage) as children, Offsets(settings) as offsets:
            started = time.monotonic()
            start_pipeline(ctx, settings, children, app_id)
            window = watch_commits(
                offsets, app_id, inputs, published, children, timeout_s=ctx.options.stage_timeout_s
            )

            def landed() -> bool:
                sql_done = warehouse.event_rows() >= expected
                return sql_done and offsets.committed(settings.topic("sink-parquet"), enriched) >= expected

            done_at = _poll(
                landed, started + ctx.options.stage_timeout_s, children, "every row in SQL and Parquet"
            )
            children.sample()
            latency = latency_runs(ctx, settings, warehouse, children)
            children.sample()
        rows = {
            "sql": count_sql_rows(settings.database_url),
            "parquet": count_parquet_rows(settings.warehouse_dir),
        }
    finally:
        warehouse.close()
        delete_stage(settings)
    assert window.first_at is not None
    seconds = done_at - window.first_at
    result = {
        "events_per_s": round(published / seconds, 1),
        "records": published,
        "seconds": round(seconds, 2),
        "per_s_from_start": round(published / (done_at - started), 1),
        "seconds_from_start": round(done_at - started, 2),
        "publish_s": round(publish_s, 2),
        "valid_events": expected,
        "rows_at_the_end": rows,
        "method": END_TO_END_METHOD,
        "processes": [child.figures() for child in children.started],
    }
    return result, latency


END_TO_END_METHOD = (
    "1 stream worker + `sink sql` (SQLite) + `sink parquet`, quality gate on, started together on a fresh "
    "prefix holding the backlog; done = every valid event a row in the SQL event tables (polled every "
    "0.25 s) and the Parquet sink's group committed on every enriched record; events/s = backlog records "
    "/ (done - the worker's first commit)"
)


def start_pipeline(ctx: Context, settings: Settings, children: Children, app_id: str) -> None:
    """One stream worker in group `app_id` and both sinks (their default groups under the prefix)."""
    start_workers(ctx, settings, children, app_id, 1)
    for kind in ("sql", "parquet"):
        group = settings.topic(f"sink-{kind}")
        argv = python_module("mic_pipeline.cli", "sink", kind, "--group-id", group, *ctx.options.sink_args)
        children.start(f"sink-{kind}", argv, sink_env(settings))


def _poll(condition: Any, deadline: float, children: Children, what: str) -> float:
    while not condition():
        children.sample()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.25)
    return time.monotonic()


def offered_rates(ctx: Context) -> Iterator[tuple[float, float, bool]]:
    """(rate, seconds, part of the ramp) in the order they are tried."""
    options = ctx.options
    for rate in options.rates:
        yield rate, options.rate_seconds, False
    if options.ramp:
        rate = max(options.rates) * RAMP_FACTOR
        while rate <= RAMP_LIMIT:
            yield round(rate, -2), options.ramp_seconds, True
            rate *= RAMP_FACTOR


def latency_runs(
    ctx: Context, settings: Settings, warehouse: Warehouse, children: Children
) -> list[dict[str, Any]]:
    """Latency at each offered rate; the ramp stops at the first rate that does not hold."""
    from producers.publisher import EventPublisher

    runs: list[dict[str, Any]] = []
    with EventPublisher(settings) as publisher:
        for rate, seconds, ramp in offered_rates(ctx):
            run = LatencyRun(rate, seconds, ctx.options.poll_interval_s)
            result = run.execute(publisher, ctx.backlog.rest, warehouse, children, ctx.options.hold_p99_s)
            result["ramp"] = ramp
            runs.append(result)
            ctx.log(
                f"latency at {rate:g}/s: p50 {result['p50_s']} s, p99 {result['p99_s']} s, "
                f"holds {result['holds']}"
            )
            if ramp and not result["holds"]:
                break
    return runs


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (not empty)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


@dataclass
class LatencyRun:
    """One offered rate: produce for `seconds`, poll the warehouse until every event landed."""

    rate: float
    seconds: float
    poll_interval_s: float
    produced: dict[str, float] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    polls: list[float] = field(default_factory=list)

    def execute(
        self,
        publisher: Any,
        records: Iterator[SimRecord],
        warehouse: Warehouse,
        children: Children,
        hold_p99_s: float,
    ) -> dict[str, Any]:
        from producers.pacing import run_paced

        warehouse.skip_existing()
        summary: dict[str, Any] = {}

        def send(record: SimRecord) -> None:
            if record.truth.expected == VALID and record.truth.event_id is not None:
                self.produced[record.truth.event_id] = time.monotonic()
            publisher.publish_raw(record.truth.topic, record.key, record.value)

        def produce() -> None:
            result = run_paced(records, send, rate=self.rate, duration_s=self.seconds)
            publisher.flush()
            summary["achieved"] = result.achieved_rate

        producer = threading.Thread(target=produce, name=f"produce-{self.rate:g}")
        producer.start()
        try:
            self._poll(warehouse, producer, children)
        finally:
            producer.join()
        return self._figures(summary.get("achieved", 0.0), hold_p99_s)

    def _poll(self, warehouse: Warehouse, producer: threading.Thread, children: Children) -> None:
        grace_ends: float | None = None
        while True:
            began = time.monotonic()
            ids = warehouse.new_event_ids()
            now = time.monotonic()
            self.polls.append(now - began)
            for event_id in ids:
                if event_id in self.produced and event_id not in self.seen:
                    self.seen[event_id] = now
            if not producer.is_alive():
                if len(self.seen) >= len(self.produced):
                    return
                grace_ends = grace_ends or now + LANDING_GRACE_S
                if now > grace_ends:
                    return
            children.sample()
            time.sleep(max(0.0, self.poll_interval_s - (time.monotonic() - began)))

    def _figures(self, achieved: float, hold_p99_s: float) -> dict[str, Any]:
        latencies = [self.seen[i] - self.produced[i] for i in self.seen]
        if not latencies:
            raise BenchError(f"no event produced at {self.rate:g}/s reached the SQL warehouse")
        p99 = percentile(latencies, 0.99)
        mean_poll = sum(self.polls) / len(self.polls)
        holds = len(self.seen) == len(self.produced) and p99 <= hold_p99_s and achieved >= 0.95 * self.rate
        return {
            "offered_per_s": self.rate,
            "achieved_per_s": round(achieved, 1),
            "seconds": self.seconds,
            "valid_events": len(self.produced),
            "landed": len(self.seen),
            "p50_s": round(percentile(latencies, 0.50), 3),
            "p90_s": round(percentile(latencies, 0.90), 3),
            "p99_s": round(p99, 3),
            "max_s": round(max(latencies), 3),
            "poll_interval_s": self.poll_interval_s,
            "mean_poll_query_s": round(mean_poll, 4),
            "resolution_s": round(self.poll_interval_s + mean_poll, 3),
            "holds": holds,
        }
