"""Sink throughput on this machine: SQLite, PostgreSQL and Parquet, with and without the quality gate.

Usage:
  python bench/bench_sinks.py [--companies N] [--batch-rows B] [--repeats R] [--kafka]
  python bench/bench_sinks.py --compare LABEL=DIR [LABEL=DIR ...] [same options]

The second form measures each code tree DIR (e.g. `git archive <commit> | tar -x -C DIR`) in its own
subprocess, one after the other in the same run, against the same input, and reports every figure
also as a ratio to the first tree (the baseline): speed-ups are only ever compared within one run.
PostgreSQL is measured when MIC_TEST_POSTGRES_URL is set; `--kafka` (with MIC_KAFKA_BOOTSTRAP) adds
the end-to-end case through the runner.

Input: the enriched records of `tests/sinks_records.scenario(N)` (all four families, realistic
lifecycles, ~7.8 events per company), encoded as the stream publishes them, in event-time order and
re-timed to `--events-per-second` (so a batch covers a realistic slice of event time).

Cases (rows/s = landed rows / wall time, and rows per CPU second of this process, each the best of R
repeats into a fresh database/directory; sink construction and schema creation not timed):
- `decode_only`: `sinks.rows.decode_batch` alone, the floor every sink pays;
- `sqlite`, `postgres`, `parquet`: batches of B rows of one partition per topic, no gate, written as
  each tree's runner feeds its sink: one `write` per batch, or (trees whose sinks have
  `write_group`) one `write_group` per checkpoint holding the n-th batch of every topic;
- `*_gated`: the same with the Great Expectations gate (`GxGate`), the production configuration;
- `gate_seconds_per_batch`: `GxGate.check` alone on 1k, 10k and 20k order rows;
- `kafka_end_to_end` (`--kafka`): records already on 6-partition enriched topics -> `SinkRunner` (the
  `mic-pipeline sink` defaults for batching) -> landed, SQLite and Parquet with the gate (time from
  runner start to the last row landed, so it includes the consumer-group join).
Writes `bench/results/sinks.json` and `bench/results/sinks.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _code_root() -> Path:
    """The tree whose `sinks` is measured: `MIC_BENCH_CODE` (compare mode) or this checkout."""
    return Path(os.environ.get("MIC_BENCH_CODE", ROOT))


sys.path.insert(0, str(_code_root()))
sys.path.insert(1, str(ROOT / "tests"))

from sinks_records import encode, scenario, stamp  # noqa: E402

from schemas.topics import Family  # noqa: E402
from sinks.batch import Batch, SourceRecord  # noqa: E402
from sinks.rows import decode_batch  # noqa: E402

TOPICS = {f"b.{family.enriched_topic}": family for family in Family}
RESULTS = ROOT / "bench" / "results"


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


def timed(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best (lowest) wall and CPU seconds of `repeats` runs: on a shared machine the best run is the
    one least disturbed by other work, and this process's CPU time hardly depends on it at all."""
    walls, cpus = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def checkpoints(batches: list[Batch]) -> list[list[Batch]]:
    """The batches as the runner would checkpoint them together: the n-th batch of every topic."""
    per_topic: dict[str, list[Batch]] = {}
    for batch in batches:
        per_topic.setdefault(batch.topic, []).append(batch)
    rounds = max(len(b) for b in per_topic.values())
    return [[b[i] for b in per_topic.values() if i < len(b)] for i in range(rounds)]


def _prepared(sink: Any) -> Any:
    prepare = getattr(sink, "prepare", None)  # older trees migrated in the constructor
    if prepare is not None:
        prepare()
    return sink


def write_seconds(make_sink: Callable[[], Any], batches: list[Batch], repeats: int) -> tuple[float, float]:
    """Best wall and CPU seconds to write all batches into a fresh sink (construction and schema
    creation not timed)."""
    walls, cpus = [], []
    for _ in range(repeats):
        sink = _prepared(make_sink())
        started, cpu = time.perf_counter(), time.process_time()
        if hasattr(sink, "write_group"):  # as its runner does: every topic's due batch in one call
            for group in checkpoints(batches):
                sink.write_group(group)
        else:
            for batch in batches:
                sink.write(batch)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        sink.close()
    return min(walls), min(cpus)


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


def sqlite_sink(gate: Any) -> Callable[[], Any]:
    from sinks.sql.sink import SqlSink, make_engine

    def build() -> Any:
        path = Path(tempfile.mkdtemp()) / "w.db"
        return SqlSink(make_engine(f"sqlite:///{path}"), TOPICS, "b.mic.deadletter", gate)

    return build


def postgres_sink(url: str, gate: Any) -> Callable[[], Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from sinks.sql.sink import SqlSink, make_engine

    def build() -> Any:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(url)
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        engine = make_engine(scoped.render_as_string(hide_password=False))
        return SqlSink(engine, TOPICS, "b.mic.deadletter", gate)

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


def parquet_sink(gate: Any) -> Callable[[], Any]:
    from sinks.parquet.sink import ParquetSink

    return lambda: ParquetSink(Path(tempfile.mkdtemp()), TOPICS, gate)


def gate_costs(gate: Any, events: list[tuple[Family, dict[str, Any]]], repeats: int) -> dict[str, float]:
    """CPU seconds of one `GxGate.check` on batches of order rows."""
    batches = make_batches([e for e in events if e[0] is Family.ORDER], 20_000)
    rows = decode_batch(Family.ORDER, batches[0]).rows
    per_batch = {}
    for size in (1_000, 10_000, 20_000):
        if size <= len(rows):
            check = functools.partial(gate.check, Family.ORDER, rows[:size])
            per_batch[str(size)] = round(timed(check, repeats)[1], 4)
    return per_batch


class LandedCounter:
    """Wraps a sink and signals when `total` records have been written (any write method)."""

    def __init__(self, inner: Any, total: int) -> None:
        self.inner, self.total, self.rows = inner, total, 0
        self.name = inner.name
        self.landed = threading.Event()
        if hasattr(inner, "write_group"):
            self.write_group = self._write_group

    def prepare(self) -> None:
        _prepared(self.inner)

    def _count(self, records: int) -> None:
        self.rows += records
        if self.rows >= self.total:
            self.landed.set()

    def write(self, batch: Batch) -> Any:
        result = self.inner.write(batch)
        self._count(len(batch.records))
        return result

    def _write_group(self, batches: list[Batch]) -> Any:
        result = self.inner.write_group(batches)
        self._count(sum(len(b.records) for b in batches))
        return result

    def close(self) -> None:
        self.inner.close()


def kafka_end_to_end(events: list[tuple[Family, dict[str, Any]]], gate: Any) -> dict[str, int]:
    from kafka import KafkaProducer

    from mic_pipeline.config import Settings
    from mic_pipeline.infra.topics import admin_client, create_topics
    from mic_pipeline.kafka_clients import kafka_python_options
    from sinks.app import SinkKind, build_sink, sink_topics
    from sinks.cli import register
    from sinks.runner import RunnerConfig, SinkRunner

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    defaults = parser.parse_args(["sink", "sql"])  # the CLI's batching defaults, whatever the tree
    results: dict[str, int] = {}
    for kind in ("sqlite", "parquet"):
        tmp = Path(tempfile.mkdtemp())
        settings = Settings(
            kafka_bootstrap=os.environ["MIC_KAFKA_BOOTSTRAP"],
            warehouse_dir=tmp,
            database_url=f"sqlite:///{tmp / 'w.db'}",
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            partitions=6,
        )
        topics = create_topics(settings)
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            **kafka_python_options(settings, acks="all", linger_ms=20),
        )
        for family, row in events:
            producer.send(
                settings.topic(family.enriched_topic), key=row["company_id"].encode(), value=encode(row)
            )
        producer.flush(60)
        producer.close()
        sink_kind: SinkKind = "sql" if kind == "sqlite" else "parquet"
        counter = LandedCounter(_prepared(build_sink(settings, sink_kind, gate)), len(events))
        config = RunnerConfig(
            group_id=f"bench-{uuid.uuid4().hex[:6]}",
            max_batch_rows=defaults.max_batch_rows,
            max_batch_wait_s=defaults.max_batch_wait,
        )
        runner = SinkRunner(settings, counter, sink_topics(settings, sink_kind), config)
        started = time.perf_counter()
        thread = threading.Thread(target=runner.run, args=(counter.landed.is_set,))
        thread.start()
        counter.landed.wait(900)
        elapsed = time.perf_counter() - started
        thread.join(60)
        runner.close()
        results[f"{kind}_gated"] = round(len(events) / elapsed)
        with admin_client(settings.kafka_bootstrap) as admin:
            admin.delete_topics(topics)
    return results


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every case against the tree on `sys.path`; the result document."""
    from sinks.quality.gate import GxGate

    started = time.perf_counter()
    gate = GxGate()
    gate_startup = time.perf_counter() - started
    events = realistic(scenario(args.companies), args.events_per_second)
    batches = make_batches(events, args.batch_rows)
    total = len(events)
    rate: dict[str, int] = {}
    cpu_rate: dict[str, int] = {}

    def record(name: str, seconds: tuple[float, float]) -> None:
        rate[name], cpu_rate[name] = round(total / seconds[0]), round(total / seconds[1])

    record("decode_only", timed(lambda: [decode_batch(TOPICS[b.topic], b) for b in batches], args.repeats))
    postgres_url = os.environ.get("MIC_TEST_POSTGRES_URL")
    for gated in (False, True):
        chosen = gate if gated else None
        suffix = "_gated" if gated else ""
        record(f"sqlite{suffix}", write_seconds(sqlite_sink(chosen), batches, args.repeats))
        if postgres_url:
            record(
                f"postgres{suffix}", write_seconds(postgres_sink(postgres_url, chosen), batches, args.repeats)
            )
            drop_bench_schemas(postgres_url)
        record(f"parquet{suffix}", write_seconds(parquet_sink(chosen), batches, args.repeats))
    result: dict[str, Any] = {
        "sink_write_rows_per_second": rate,
        "sink_write_rows_per_cpu_second": cpu_rate,
        "gate_startup_seconds": round(gate_startup, 2),
        "gate_seconds_per_batch": gate_costs(gate, events, args.repeats),
    }
    if args.kafka:
        result["kafka_end_to_end_rows_per_second"] = kafka_end_to_end(events, gate)
    return result


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    packages = ("great_expectations", "pandas", "pyarrow", "SQLAlchemy", "psycopg", "msgspec", "kafka-python")
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "versions": {name: version(name) for name in packages},
        "note": "2-core machine shared with the broker, PostgreSQL and other work; one process per case",
    }


def _flat(document: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    sections = {
        "sink_write_rows_per_second": "rows/s",
        "sink_write_rows_per_cpu_second": "rows/CPU-s",
        "kafka_end_to_end_rows_per_second": "end to end rows/s",
    }
    for section, unit in sections.items():
        for name, value in document.get(section, {}).items():
            flat[f"{name} ({unit})"] = value
    for size, seconds in document.get("gate_seconds_per_batch", {}).items():
        flat[f"gate CPU s per {int(size):,}-row batch"] = seconds
    return flat


def compare(trees: list[tuple[str, Path]], args: argparse.Namespace) -> dict[str, Any]:
    """Measure each tree in its own subprocess, in order; ratios against the first."""
    runs: dict[str, Any] = {}
    for label, tree in trees:
        command = [sys.executable, __file__, "--measure-only", *_forwarded(args)]
        env = dict(os.environ, MIC_BENCH_CODE=str(tree.resolve()), PYTHONPATH=str(tree.resolve()))
        print(f"measuring {label} ({tree}) ...", file=sys.stderr, flush=True)
        output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        runs[label] = json.loads(output)
    base = _flat(runs[trees[0][0]])
    ratios = {
        label: {key: round(value / base[key], 2) for key, value in _flat(run).items() if base.get(key)}
        for label, run in runs.items()
    }
    return {"runs": runs, "ratio_to_baseline": ratios, "baseline": trees[0][0]}


def _forwarded(args: argparse.Namespace) -> list[str]:
    forwarded = ["--companies", str(args.companies), "--batch-rows", str(args.batch_rows)]
    forwarded += ["--repeats", str(args.repeats), "--events-per-second", str(args.events_per_second)]
    return forwarded + (["--kafka"] if args.kafka else [])


def markdown(document: dict[str, Any]) -> str:
    runs: dict[str, Any] = document["runs"]
    info = document["machine"]
    labels = list(runs)
    keys = list(_flat(runs[labels[-1]]))
    lines = [
        f"# Sink throughput ({document['date']}, {document['input']['rows']:,} rows, "
        f"batches of {document['input']['batch_rows']:,})",
        "",
        f"Machine: {info['cpus']} CPUs, Python {info['python']}, {info['platform']}; "
        f"load average at start {info['load_average_at_start']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in document["machine"]["versions"].items()) + ".",
        "Rows/s: wall time, best of the repeats; rows/CPU-s: this process's CPU time (hardly "
        "disturbed by other work on the machine; PostgreSQL's own work not included); gate figures "
        "are CPU seconds per call; the ratio column is the last tree against "
        f"`{document['baseline']}`, measured in the same run.",
        "",
        "| case | " + " | ".join(labels) + " | ratio |",
        "|---|" + "---|" * (len(labels) + 1),
    ]
    for key in keys:
        values = [_flat(runs[label]).get(key) for label in labels]
        cells = ["-" if v is None else f"{v:,}" for v in values]
        ratio = document["ratio_to_baseline"][labels[-1]].get(key)
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {'-' if ratio is None else f'{ratio}x'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=4000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events-per-second", type=int, default=200, help="event-time rate of the input")
    parser.add_argument("--kafka", action="store_true", help="also the end-to-end case on the broker")
    parser.add_argument("--compare", nargs="+", metavar="LABEL=DIR", help="code trees, baseline first")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as scratch:
        tempfile.tempdir = scratch  # every database and dataset below is created (and removed) in here
        if args.measure_only:
            print(json.dumps(measure(args)))
            return
        trees = [(label, Path(path)) for label, path in (item.split("=", 1) for item in args.compare or [])]
        document = compare(trees or [("this checkout", ROOT)], args)
    document.update(
        date=dt.date.today().isoformat(),
        machine=machine(),
        input={"rows": len(scenario(args.companies)), "batch_rows": args.batch_rows, "repeats": args.repeats},
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sinks.json").write_text(json.dumps(document, indent=2) + "\n")
    (RESULTS / "sinks.md").write_text(markdown(document))
    print(markdown(document))


if __name__ == "__main__":
    main()
