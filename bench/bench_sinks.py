"""Sink throughput on this machine: SQLite, PostgreSQL and Parquet, and the quality gate's cost.

Usage: python bench/bench_sinks.py [--companies N] [--batch-rows B] [--repeats R]
       (PostgreSQL is measured when MIC_TEST_POSTGRES_URL is set; the Kafka end-to-end runs when
       MIC_KAFKA_BOOTSTRAP is set)

Input: the enriched records of `tests/sinks_records.scenario(N)` (all four families, realistic
lifecycles, ~7.8 events per company), encoded as the stream publishes them, in event-time order and
re-timed to `--events-per-second` (so a batch covers a realistic slice of event time);
`parquet_spread_over_40_days` writes the raw scenario instead, where every company's events spread
over 40 days and each batch fans out into many date partitions and files.

Cases (rows/s = landed rows / wall time; median of R repeats, each into a fresh database/directory):
- `decode_only`: `sinks.rows.decode_batch` alone, the floor every sink pays;
- `sqlite`, `postgres`, `parquet`: `Sink.write` of batches of B rows, no gate: decode, idempotent
  insert or file write, state-table rebuild (SQL), durable before returning;
- `gate_seconds_per_batch`: `GxGate.check` on batches of 1k, 5k and 20k order rows (GX import and
  context set-up timed separately as `gate_startup_seconds`);
- `kafka_end_to_end` (with a broker): records already on the enriched topics -> `SinkRunner` ->
  landed, for SQLite and Parquet, with and without the gate (time from runner start to the last row
  landed, so it includes the consumer-group join).
Writes `bench/results/sinks.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sinks_records import encode, scenario, stamp  # noqa: E402

from schemas.topics import Family  # noqa: E402
from sinks.batch import Batch, SourceRecord  # noqa: E402
from sinks.rows import decode_batch  # noqa: E402

TOPICS = {f"b.{family.enriched_topic}": family for family in Family}


def make_batches(events: list[tuple[Family, dict[str, Any]]], rows: int) -> list[Batch]:
    per_topic: dict[str, list[SourceRecord]] = {}
    for family, row in events:
        topic = f"b.{family.enriched_topic}"
        records = per_topic.setdefault(topic, [])
        records.append(SourceRecord(topic, 0, len(records), row["company_id"].encode(), encode(row)))
    return [
        Batch(topic, 0, tuple(records[start : start + rows]))
        for topic, records in per_topic.items()
        for start in range(0, len(records), rows)
    ]


def timed(run: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def write_seconds(make_sink: Callable[[], Any], batches: list[Batch], repeats: int) -> float:
    """Median time to write all batches into a fresh sink (construction and migrations not timed)."""
    samples = []
    for _ in range(repeats):
        sink = make_sink()
        started = time.perf_counter()
        for batch in batches:
            sink.write(batch)
        samples.append(time.perf_counter() - started)
        sink.close()
    return statistics.median(samples)


def realistic(
    events: list[tuple[Family, dict[str, Any]]], per_second: int
) -> list[tuple[Family, dict[str, Any]]]:
    """The events in event-time order, re-timed to arrive at `per_second` (lifecycle order kept)."""
    ordered = sorted(events, key=lambda item: item[1]["occurred_at"])
    start = dt.datetime(2020, 9, 1, 9, 0, tzinfo=dt.UTC)
    step = dt.timedelta(seconds=1 / per_second)
    return [
        (family, {**row, "occurred_at": stamp(start + i * step)}) for i, (family, row) in enumerate(ordered)
    ]


def sqlite_sink() -> Any:
    from sinks.sql.sink import SqlSink, make_engine

    path = Path(tempfile.mkdtemp()) / "w.db"
    return SqlSink(make_engine(f"sqlite:///{path}"), TOPICS, "b.mic.deadletter")


def postgres_sink(url: str) -> Callable[[], Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from sinks.sql.sink import SqlSink, make_engine

    def build() -> Any:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with create_engine(url).begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        return SqlSink(make_engine(scoped.render_as_string(hide_password=False)), TOPICS, "b.mic.deadletter")

    return build


def drop_bench_schemas(url: str) -> None:
    """Remove the schemas `postgres_sink` created."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        names = connection.execute(
            text("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'bench\\_%'")
        ).scalars()
        for name in list(names):
            connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    engine.dispose()


def parquet_sink() -> Any:
    from sinks.parquet.sink import ParquetSink

    return ParquetSink(Path(tempfile.mkdtemp()), TOPICS)


def gate_costs(events: list[tuple[Family, dict[str, Any]]], repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    from sinks.quality.gate import GxGate

    gate = GxGate()
    startup = time.perf_counter() - started
    batches = make_batches([e for e in events if e[0] is Family.ORDER], 20_000)
    rows = decode_batch(Family.ORDER, batches[0]).rows
    per_batch = {}
    for size in (1_000, 5_000, 20_000):
        if size <= len(rows):
            check = functools.partial(gate.check, Family.ORDER, rows[:size])
            per_batch[str(size)] = round(timed(check, repeats), 4)
    return {"gate_startup_seconds": round(startup, 2), "gate_seconds_per_batch": per_batch}


class LandedCounter:
    """Wraps a sink and signals when `total` records have been written."""

    def __init__(self, inner: Any, total: int) -> None:
        self.inner, self.total, self.rows = inner, total, 0
        self.name = inner.name
        self.landed = threading.Event()

    def write(self, batch: Batch) -> Any:
        result = self.inner.write(batch)
        self.rows += len(batch.records)
        if self.rows >= self.total:
            self.landed.set()
        return result

    def close(self) -> None:
        self.inner.close()


def kafka_end_to_end(events: list[tuple[Family, dict[str, Any]]], batch_rows: int) -> dict[str, float]:
    from kafka import KafkaProducer

    from mic_pipeline.config import Settings
    from mic_pipeline.infra.topics import admin_client, create_topics
    from sinks.app import SinkKind, build_gate, build_sink, sink_topics
    from sinks.runner import RunnerConfig, SinkRunner

    gate = build_gate()
    results: dict[str, float] = {}
    for kind, gated in (("sqlite", False), ("sqlite", True), ("parquet", False), ("parquet", True)):
        tmp = Path(tempfile.mkdtemp())
        settings = Settings(
            kafka_bootstrap=os.environ["MIC_KAFKA_BOOTSTRAP"],
            warehouse_dir=tmp,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            partitions=3,
        )
        topics = create_topics(settings)
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20)
        for family, row in events:
            producer.send(
                settings.topic(family.enriched_topic), key=row["company_id"].encode(), value=encode(row)
            )
        producer.flush(60)
        producer.close()
        sink_kind: SinkKind = "sql" if kind == "sqlite" else "parquet"
        sink = build_sink(settings, sink_kind, gate if gated else None)
        counter = LandedCounter(sink, len(events))
        config = RunnerConfig(
            group_id=f"bench-{uuid.uuid4().hex[:6]}", max_batch_rows=batch_rows, max_batch_wait_s=0.5
        )
        runner = SinkRunner(settings, counter, sink_topics(settings, sink_kind), config)
        started = time.perf_counter()
        thread = threading.Thread(target=runner.run, args=(counter.landed.is_set,))
        thread.start()
        counter.landed.wait(600)
        elapsed = time.perf_counter() - started
        thread.join(60)
        runner.close()
        results[f"{kind}{'_gated' if gated else ''}"] = round(len(events) / elapsed)
        with admin_client(settings.kafka_bootstrap) as admin:
            admin.delete_topics(topics)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=4000)
    parser.add_argument("--batch-rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events-per-second", type=int, default=200, help="event-time rate of the input")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as scratch:
        tempfile.tempdir = scratch  # every database and dataset below is created (and removed) in here
        result = measure(args)
    out = ROOT / "bench" / "results" / "sinks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every case; the result document."""
    events = realistic(scenario(args.companies), args.events_per_second)
    batches = make_batches(events, args.batch_rows)
    total = len(events)
    rows_per_second: dict[str, int] = {}
    decode_time = timed(lambda: [decode_batch(TOPICS[b.topic], b) for b in batches], args.repeats)
    rows_per_second["decode_only"] = round(total / decode_time)
    rows_per_second["sqlite"] = round(total / write_seconds(sqlite_sink, batches, args.repeats))
    postgres_url = os.environ.get("MIC_TEST_POSTGRES_URL")
    if postgres_url:
        seconds = write_seconds(postgres_sink(postgres_url), batches, args.repeats)
        rows_per_second["postgres"] = round(total / seconds)
        drop_bench_schemas(postgres_url)
    rows_per_second["parquet"] = round(total / write_seconds(parquet_sink, batches, args.repeats))
    spread = make_batches(scenario(args.companies), args.batch_rows)  # each company's events over 40 days
    rows_per_second["parquet_spread_over_40_days"] = round(
        total / write_seconds(parquet_sink, spread, args.repeats)
    )
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "input": {"rows": total, "batch_rows": args.batch_rows, "repeats": args.repeats},
        "sink_write_rows_per_second": rows_per_second,
        **gate_costs(events, args.repeats),
    }
    if os.environ.get("MIC_KAFKA_BOOTSTRAP"):
        result["kafka_end_to_end_rows_per_second"] = kafka_end_to_end(events, args.batch_rows)
    return result


if __name__ == "__main__":
    main()
