"""The reconciliation check that ends every fault test.

What the producer was told is the ground truth of the check: a record acknowledged at (topic,
partition, offset) must be there, and every record in the input topics must be one the producer
either acknowledged or was told had failed (a failed record may or may not have been written: Kafka
cannot tell). From the records in the input topics and what each should become (`Sent.expected`):

- the `event_id`s in the SQL warehouse = those in the Parquet dataset (each exactly once) = the
  valid events in the input topics (a re-sent duplicate is the same event);
- the dead letters in SQL, by original (topic, partition, offset) = the invalid records, each with
  its reason;
- the duplicates the stream dropped = copies beyond the first of each valid event;
- nothing quarantined (SQL rows and batches, the Parquet `_quarantine/`);
- the live aggregates of every running worker (`/aggregates`) = the offline recomputation from the
  stream's outputs (`streams.offline`);
- every consumer group (stream, both sinks) committed to the end of its topics;
- every Parquet file readable, no temporary file left in the warehouse.

`reconcile` polls until all of that holds (with a deadline, then fails naming every difference) and
returns the counts the report lists: produced, acknowledged, failed (and of those, written anyway),
landed, dead letters, duplicates dropped, repeated deliveries absorbed (outputs the stream wrote more
than once: rows, dead letters). With `MIC_FAULTS_LEDGER` set, they are appended there (JSON lines).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from faults_pipeline import Proc
from faults_traffic import Sent, Traffic
from streams_kafka import aggregates_diff, read_outputs, read_topic

from mic_pipeline.config import Settings
from schemas.topics import DEADLETTER_TOPIC, Family

Coordinates = tuple[str, int, int]
"""(logical topic, partition, offset) of an input record: dead letters name their original so."""


@dataclass
class Expected:
    """What the pipeline must make of the records in the input topics."""

    valid: set[str]
    dead_letters: dict[Coordinates, str]
    duplicates: int
    acknowledged: int
    failed: int
    failed_present: int


@dataclass
class Counts:
    """A fault test's outcome, for the report."""

    test: str
    produced: int
    acknowledged: int
    failed: int
    failed_but_written: int
    landed: int
    dead_letters: int
    duplicates_dropped: int
    repeated_rows_absorbed: int
    repeated_dead_letters_absorbed: int
    seconds_to_converge: float
    notes: dict[str, Any] = field(default_factory=dict)


def expected_from(settings: Settings, traffic: Traffic) -> Expected:
    """Read the input topics back and check them against the producer's answers (module doc)."""
    present: dict[Coordinates, str] = {}
    for family in Family:
        for record in read_topic(settings, family.topic):
            present[(family.topic, record.partition, record.offset)] = _digest(record.value)
    acknowledged: dict[Coordinates, Sent] = {}
    for sent in traffic.acknowledged():
        assert sent.partition is not None and sent.offset is not None
        acknowledged[(sent.topic, sent.partition, sent.offset)] = sent
    lost = sorted(coordinates for coordinates in acknowledged if coordinates not in present)
    assert not lost, f"{len(lost)} acknowledged records are not in the input topics, e.g. {lost[:5]}"
    changed = [c for c, s in acknowledged.items() if present[c] != _digest(s.value)]
    assert not changed, f"{len(changed)} acknowledged records hold other bytes, e.g. {changed[:5]}"
    unacknowledged: dict[tuple[str, str], list[Sent]] = {}
    for sent in traffic.failed():
        unacknowledged.setdefault((sent.topic, _digest(sent.value)), []).append(sent)
    valid: Counter[str] = Counter()
    dead_letters: dict[Coordinates, str] = {}
    failed_present = 0
    for coordinates, digest in sorted(present.items()):
        found = acknowledged.get(coordinates)
        if found is None:
            candidates = unacknowledged.get((coordinates[0], digest))
            assert candidates, f"{coordinates} is in the topic but was not acknowledged nor reported failed"
            found = candidates.pop(0)
            failed_present += 1
        sent = found
        if sent.expected in ("valid", "duplicate"):
            assert sent.event_id is not None
            valid[sent.event_id] += 1
        else:
            dead_letters[coordinates] = sent.expected
    return Expected(
        set(valid),
        dead_letters,
        sum(valid.values()) - len(valid),
        len(acknowledged),
        len(traffic.failed()),
        failed_present,
    )


def _digest(value: bytes | None) -> str:
    return hashlib.sha256(value or b"").hexdigest()


# -- the warehouse ----------------------------------------------------------------------------------


def sql_state(database_url: str) -> tuple[Counter[str], dict[Coordinates, str], int]:
    """Event ids landed in SQL (all event tables), dead letters by original coordinates, and
    quarantined rows + batches."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return Counter(), {}, 0  # the SQL sink has not created it yet
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            ids: Counter[str] = Counter()
            for family in Family:
                if family.table in tables:
                    ids.update(connection.execute(text(f"SELECT event_id FROM {family.table}")).scalars())
            letters: dict[Coordinates, str] = {}
            if "dead_letters" in tables:
                rows = connection.execute(text(
                    "SELECT original_topic, original_partition, original_offset, reason FROM dead_letters"
                ))
                letters = {(str(t), int(p), int(o)): str(reason) for t, p, o, reason in rows}
            held = 0
            for table in ("quarantined_rows", "quarantined_batches"):
                if table in tables:
                    held += int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()
    return ids, letters, held


@dataclass
class ParquetReader:
    """Event ids of the Parquet dataset; each file read once per version (path, size, mtime)."""

    root: Path
    _cache: dict[Path, tuple[tuple[int, int], list[str]]] = field(default_factory=dict)

    def event_ids(self) -> Counter[str]:
        """Every data file read (an unreadable one raises; one removed after the listing is skipped)."""
        ids: Counter[str] = Counter()
        seen: set[Path] = set()
        for family in Family:
            for path in sorted((self.root / family.table).glob("event_date=*/*.parquet")):
                if path.name.startswith((".", "_")):
                    continue
                try:
                    stat = path.stat()
                    version = (stat.st_size, stat.st_mtime_ns)
                    cached = self._cache.get(path)
                    if cached is None or cached[0] != version:
                        column = pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
                        cached = (version, [str(value) for value in column])
                        self._cache[path] = cached
                except FileNotFoundError:  # an uncommitted attempt's file, removed by the sink since
                    continue  # the listing: not part of the dataset (the next look lists again)
                ids.update(cached[1])
                seen.add(path)
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        return ids

    def quarantined(self) -> list[Path]:
        return [p for p in (self.root / "_quarantine").rglob("*") if p.is_file()]


def temporary_files(root: Path) -> list[Path]:
    """Files a write left half-done: `*.tmp` anywhere in the warehouse."""
    return sorted(path for path in root.rglob("*.tmp"))


# -- consumer groups --------------------------------------------------------------------------------


def group_lags(settings: Settings, groups: dict[str, Sequence[str]]) -> dict[str, int]:
    """Records each group has not committed yet on its topics (logical names)."""
    from kafka import TopicPartition

    from mic_pipeline.infra.topics import admin_client

    lags: dict[str, int] = {}
    with admin_client(settings) as admin:
        for group, topics in groups.items():
            names = [settings.topic(topic) for topic in topics]
            partitions = [TopicPartition(name, p) for name in names for p in range(settings.partitions)]
            ends = _end_offsets(settings, partitions)
            committed = admin.list_group_offsets({group: partitions}).get(group, {})
            lag = 0
            for tp in partitions:
                found = committed.get(tp)
                position = found.offset if found is not None and found.offset >= 0 else 0
                lag += max(0, ends[tp] - position)
            lags[group] = lag
    return lags


def _end_offsets(settings: Settings, partitions: list[Any]) -> dict[Any, int]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed")
    try:
        ends: dict[Any, int] = consumer.end_offsets(partitions)
        return ends
    finally:
        consumer.close()


def pipeline_groups(settings: Settings) -> dict[str, Sequence[str]]:
    """The stream's and the sinks' groups and what they consume."""
    inputs = [family.topic for family in Family]
    enriched = [family.enriched_topic for family in Family]
    return {
        settings.topic("mic-streams"): inputs,
        settings.topic("mic-sink-sql"): [*enriched, DEADLETTER_TOPIC],
        settings.topic("mic-sink-parquet"): enriched,
    }


# -- the check --------------------------------------------------------------------------------------


@dataclass
class Observation:
    """One look at the pipeline's results and the differences from what was expected."""

    problems: list[str]
    repeated_rows: int = 0
    repeated_dead_letters: int = 0


def observe(
    settings: Settings, expected: Expected, workers: Iterable[Proc], parquet: ParquetReader
) -> Observation:
    """Compare everything the module doc lists; cheap checks first, the outputs only when they pass."""
    problems: list[str] = []
    sql_ids, sql_letters, held = sql_state(settings.database_url)
    _compare_ids("SQL", sql_ids, expected.valid, problems)
    parquet_ids = parquet.event_ids()
    _compare_ids("Parquet", parquet_ids, expected.valid, problems)
    if sql_letters != expected.dead_letters:
        missing = sorted(set(expected.dead_letters) - set(sql_letters))
        extra = sorted(set(sql_letters) - set(expected.dead_letters))
        wrong = sorted(c for c in set(sql_letters) & set(expected.dead_letters)
                       if sql_letters[c] != expected.dead_letters[c])
        problems.append(f"dead letters in SQL: {len(missing)} missing {missing[:3]}, {len(extra)} unexpected "
                        f"{extra[:3]}, {len(wrong)} with another reason "
                        f"{[(c, sql_letters[c], expected.dead_letters[c]) for c in wrong[:3]]}")
    if held or parquet.quarantined():
        problems.append(f"quarantined: {held} in SQL, {len(parquet.quarantined())} Parquet files")
    if problems:
        return Observation(problems)
    lags = {group: lag for group, lag in group_lags(settings, pipeline_groups(settings)).items() if lag}
    if lags:
        return Observation([f"uncommitted records per group: {lags}"])
    outputs = read_outputs(settings)
    offline = outputs.offline(expected.duplicates)
    for worker in workers:
        live = worker.aggregates()
        if live != offline:
            problems.append(f"{worker.name}: live aggregates differ from the offline recomputation: "
                            f"{aggregates_diff(live, offline)[:8]}")
    repeated_rows = len(outputs.rows) - len(outputs.row_counts)
    dead_letter_records = len(read_topic(settings, DEADLETTER_TOPIC))
    return Observation(problems, repeated_rows, dead_letter_records - len(outputs.dead_letters))


def _compare_ids(where: str, landed: Counter[str], valid: set[str], problems: list[str]) -> None:
    twice = [event_id for event_id, n in landed.items() if n > 1]
    missing = valid - set(landed)
    extra = set(landed) - valid
    if twice or missing or extra:
        problems.append(f"{where}: {len(missing)} valid events missing (e.g. {sorted(missing)[:3]}), "
                        f"{len(extra)} unexpected, {len(twice)} more than once")


def reconcile(
    settings: Settings,
    traffic: Traffic,
    workers: Sequence[Proc],
    *,
    timeout_s: float = 240.0,
    notes: dict[str, Any] | None = None,
) -> Counts:
    """Wait until the pipeline's results match (module doc), then check the files; the counts."""
    assert workers, "the check needs a running worker to ask for its live aggregates"
    began = time.monotonic()
    unanswered = [sent.seq for sent in traffic.records if not sent.answered]
    assert not unanswered, f"{len(unanswered)} records still without the broker's answer"
    expected = expected_from(settings, traffic)
    parquet = ParquetReader(settings.warehouse_dir)
    last = Observation(["not observed yet"])
    deadline = began + timeout_s
    shown = 0.0
    while True:
        last = observe(settings, expected, workers, parquet)
        now = time.monotonic()
        if now - shown >= 10.0:  # the convergence's progress, shown when the test fails
            print(f"reconcile +{now - began:.0f} s: {'; '.join(last.problems) or 'reconciled'}"[:600])
            shown = now
        if not last.problems or now >= deadline:
            break
        for worker in workers:
            assert worker.alive, f"{worker.name} exited with {worker.process.returncode}:\n{worker.tail()}"
        time.sleep(2.0)  # between two looks at the warehouse (each reads it all)
    assert not last.problems, (
        f"not reconciled after {timeout_s:.0f} s:\n  " + "\n  ".join(last.problems)
        + f"\n(logs: {', '.join(str(worker.log) for worker in workers)})"
    )
    leftovers = temporary_files(settings.warehouse_dir)
    assert not leftovers, f"temporary files left in the warehouse: {leftovers[:5]}"
    counts = Counts(
        test=os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
        produced=len(traffic.handed()),
        acknowledged=expected.acknowledged,
        failed=expected.failed,
        failed_but_written=expected.failed_present,
        landed=len(expected.valid),
        dead_letters=len(expected.dead_letters),
        duplicates_dropped=expected.duplicates,
        repeated_rows_absorbed=last.repeated_rows,
        repeated_dead_letters_absorbed=last.repeated_dead_letters,
        seconds_to_converge=round(time.monotonic() - began, 1),
        notes=dict(notes or {}),
    )
    print(f"reconciled: {json.dumps(asdict(counts))}")
    ledger = os.environ.get("MIC_FAULTS_LEDGER")
    if ledger:
        with open(ledger, "a") as out:
            out.write(json.dumps(asdict(counts)) + "\n")
    return counts
