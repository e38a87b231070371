"""`mic-pipeline trace EVENT_ID` and `trace --company INN --since T`: what happened to an event.

Nothing scans a topic. The trace index, per event:

1. the stream: every stream worker's `GET /trace?event_id=` (`streams/app.py`): for the partitions it
   owns, the event's de-duplication marker -- the decision (`ok` or the dead-letter reason), the input
   record it was decided from (`origin`), where it was decided (a re-check of a parked record is
   `recheck/<p>/<n>`), the origins of copies dropped as duplicates (the last 8) -- or the parked
   record waiting for its member. One dict lookup per owned partition. The workers' URLs are the
   health URLs' (`MIC_HEALTH_URLS`, `--health-url`, a live `run`'s; `/health` -> `/trace`) and
   `--streams-url`; the answers must cover every partition, else the trace says it is incomplete;
2. the warehouse (`mic_pipeline.ops.trace_warehouse`): the SQL event tables, `dead_letters` and
   `quarantined_rows` by key, the Parquet sink's claim index by key (the enriched record that
   claimed the id, and its quarantine status), then the one file that holds the row;
3. single Kafka records read by their coordinates (assign, seek, one fetch: `KafkaProbe`), for the
   input records' timestamps and keys and the enriched record's.

Markers live `MIC_STREAMS_DEDUPE_DAYS` (7) days of event time; after that the warehouse still
answers (the input record's coordinates then come from the dead letter, or are unknown).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mic_pipeline.config import HealthEndpoint, Settings
from mic_pipeline.ops.trace_warehouse import parquet_claims, parquet_file, sql_event
from schemas.topics import INPUT_TOPICS

WORKER_TIMEOUT_S = 3.0
MAX_ANSWER = 1024 * 1024
RECHECK = "recheck/"


@dataclass(frozen=True)
class Worker:
    """A stream worker's trace URL (`http://host:port/trace`) and its name."""

    name: str
    url: str


def stream_workers(endpoints: Sequence[HealthEndpoint], streams_urls: Sequence[str] = ()) -> list[Worker]:
    """The trace URLs of the stream workers among `endpoints` (those not named `sink-*` or `web`),
    plus `streams_urls` (any URL of a worker: its path is replaced)."""
    found: dict[str, Worker] = {}
    for endpoint in endpoints:
        name = endpoint.name or ""
        if name.startswith("sink") or name == "web":
            continue
        url = _trace_url(endpoint.url)
        found.setdefault(url, Worker(name or urllib.parse.urlsplit(url).netloc, url))
    for url in streams_urls:
        trace = _trace_url(url)
        found.setdefault(trace, Worker(urllib.parse.urlsplit(trace).netloc, trace))
    return list(found.values())


def _trace_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/trace", "", ""))


@dataclass(frozen=True)
class StreamAnswers:
    """What the stream workers said: their findings, who answered for which partitions, problems."""

    found: tuple[dict[str, Any], ...]
    answered: tuple[dict[str, Any], ...]
    problems: tuple[str, ...]


def ask_workers(workers: Sequence[Worker], event_id: str) -> StreamAnswers:
    """Ask every worker at once; a URL answering 404 is not a stream worker (left out)."""
    if not workers:
        problem = "no stream worker URL known (--streams-url, --health-url, MIC_HEALTH_URLS)"
        return StreamAnswers((), (), (problem,))
    query = urllib.parse.urlencode({"event_id": event_id})
    with ThreadPoolExecutor(max_workers=min(8, len(workers)), thread_name_prefix="trace") as pool:
        answers = list(pool.map(lambda w: _ask(w, query), workers))
    found: list[dict[str, Any]] = []
    answered: list[dict[str, Any]] = []
    problems: list[str] = []
    for worker, (document, trouble) in zip(workers, answers, strict=True):
        if trouble is not None:
            problems.append(trouble)
        elif document is not None:
            partitions = [p for p in document.get("partitions", []) if isinstance(p, int)]
            answered.append({"name": worker.name, "url": worker.url, "partitions": sorted(partitions)})
            findings = [f for f in document.get("found", []) if isinstance(f, dict)]
            found.extend(f | {"worker": worker.name} for f in findings)
    return StreamAnswers(tuple(found), tuple(answered), tuple(problems))


def _ask(worker: Worker, query: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        with urllib.request.urlopen(f"{worker.url}?{query}", timeout=WORKER_TIMEOUT_S) as response:
            body = response.read(MAX_ANSWER)
    except urllib.error.HTTPError as answer:
        if answer.code == 404:
            return None, None
        return None, f"{worker.name} ({worker.url}) answered HTTP {answer.code}"
    except (urllib.error.URLError, OSError) as error:
        return None, f"{worker.name} ({worker.url}) unreachable: {getattr(error, 'reason', None) or error}"
    try:
        document = json.loads(body)
    except ValueError:
        return None, f"{worker.name} ({worker.url}) did not answer JSON"
    return (document, None) if isinstance(document, dict) else (None, f"{worker.name}: not a trace answer")


def trace_event(
    settings: Settings, event_id: str, workers: Sequence[Worker], timeout_ms: int = 5000
) -> dict[str, Any]:
    """The journey of `event_id` (see the module docstring) as a JSON-able document."""
    from mic_pipeline.ops.kafka_probe import KafkaProbe

    now = datetime.now(UTC)
    stream = ask_workers(workers, event_id)
    sql = sql_event(settings.database_url, event_id)
    claims = parquet_claims(settings.warehouse_dir, event_id)
    inputs = _inputs(stream, sql.dead_letters, now)
    notes = list(stream.problems)
    enriched: list[dict[str, Any]] = []
    uncovered: list[int] = []
    with KafkaProbe(settings, timeout_ms=timeout_ms) as probe:
        partitions = len(probe.partitions([settings.topic(INPUT_TOPICS[0])]))
        uncovered = sorted(set(range(partitions)) - {p for a in stream.answered for p in a["partitions"]})
        if uncovered and workers:
            notes.append(f"no stream worker answered for partitions {uncovered}")
        for entry in inputs:
            where = (entry["topic"], entry["partition"], entry["offset"])
            entry.update(_record_facts(probe, settings, *where, event_id))
        for claim in claims or []:
            where = claim["enriched"]
            coordinates = (where["topic"], where["partition"], where["offset"])
            facts = _record_facts(probe, settings, *coordinates, event_id)
            enriched.append({**where, **facts})
            day = _event_date(sql.rows, facts)
            claim["file"] = parquet_file(settings.warehouse_dir, claim, event_id, day)
    if sql.error is not None:
        notes.append(f"SQL warehouse unreachable: {sql.error}")
    if not sql.available:
        notes.append(f"no SQL warehouse at {settings.database_url}")
    if claims is None:
        notes.append(f"no Parquet claim index in {settings.warehouse_dir}")
    document: dict[str, Any] = {
        "event_id": event_id,
        "traced_at": now.isoformat(),
        "inputs": inputs,
        "stream": {
            "decisions": [f for f in stream.found if f.get("decision") != "parked"],
            "workers": list(stream.answered),
            "unanswered_partitions": uncovered,
        },
        "enriched": enriched,
        "sql": {
            "available": sql.available,
            "rows": list(sql.rows),
            "dead_letters": list(sql.dead_letters),
            "quarantined": list(sql.quarantined),
        },
        "parquet": {"available": claims is not None, "claims": claims or []},
        "notes": notes,
        "complete": not stream.problems and not uncovered and sql.error is None,
    }
    document["outcome"] = outcome(document)
    return document


def _inputs(
    stream: StreamAnswers, dead_letters: Sequence[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """The input records known to carry the event: the decided one, dropped copies, a parked one,
    and the originals of its dead letters."""
    inputs: dict[tuple[str, int, int], dict[str, Any]] = {}

    def add(origin: str, **facts: Any) -> None:
        topic, partition, offset = _coordinates(origin)
        where = {"topic": topic, "partition": partition, "offset": offset}
        inputs.setdefault((topic, partition, offset), where)
        inputs[(topic, partition, offset)].update(facts)

    for found in stream.found:
        if found.get("decision") == "parked":
            waited, left = float(found.get("waited_s", 0.0)), float(found.get("expires_in_s", 0.0))
            add(
                found["origin"],
                role="parked",
                decision="parked",
                waiting_for=list(found.get("waiting_for", [])),
                waited_s=waited,
                waiting_since=(now - timedelta(seconds=waited)).isoformat(),
                expires_in_s=left,
                expires_at=(now + timedelta(seconds=left)).isoformat(),
            )
            continue
        decided_at = found.get("decided_at")
        after_wait = isinstance(decided_at, str) and decided_at.startswith(RECHECK)
        add(found["origin"], role="decided", decision=found.get("decision"), decided_at=decided_at,
            after_waiting=after_wait, held=bool(found.get("held")))  # fmt: skip
        for copy in found.get("duplicates", []):
            add(copy, role="duplicate", decision="duplicate", duplicate_of=found["origin"])
    for letter in dead_letters:
        where = letter["original"]
        key = (where["topic"], where["partition"], where["offset"])
        if not any(_same(key, known) for known in inputs):
            inputs[key] = {**where, "role": "dead-lettered", "decision": letter["reason"]}
    return list(inputs.values())


def _same(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    """Coordinates equal up to the topic prefix (the stream names topics without it)."""
    return a[1:] == b[1:] and (a[0] == b[0] or a[0].endswith("." + b[0]) or b[0].endswith("." + a[0]))


def _coordinates(origin: str) -> tuple[str, int, int]:
    topic, partition, offset = origin.rsplit("/", 2)
    return topic, int(partition), int(offset)


def _physical(settings: Settings, topic: str) -> str:
    prefix = settings.topic_prefix
    return topic if not prefix or topic.startswith(prefix) else settings.topic(topic)


def _record_facts(
    probe: Any, settings: Settings, topic: str, partition: int, offset: int, event_id: str
) -> dict[str, Any]:
    """Timestamp, key and whether it carries `event_id`, of the one record at the coordinates."""
    from kafka import TopicPartition

    from streams.records import readable_identity

    physical = _physical(settings, topic)
    tp = TopicPartition(physical, partition)
    start, end = probe.beginning_offsets([tp]).get(tp, 0), probe.end_offsets([tp]).get(tp, 0)
    if not start <= offset < end:
        return {"kafka": f"not retained in {physical} (offsets {start}-{end - 1})"}
    [record] = [r for r in probe.read_first({tp: offset}, {tp: offset + 1}) if r.offset == offset] or [None]
    if record is None:
        return {"kafka": f"no record at {physical}[{partition}]@{offset}"}
    value = record.value or b""
    identity = readable_identity(value)[0]
    facts: dict[str, Any] = {
        "physical_topic": physical,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "key": None if record.key is None else record.key.decode("utf-8", "replace"),
        "carries_event_id": identity == event_id,
    }
    occurred = _occurred_at(value)
    if occurred is not None:
        facts["occurred_at"] = occurred
    return facts


def _occurred_at(value: bytes) -> str | None:
    try:
        document = json.loads(value)
    except ValueError:
        return None
    occurred = document.get("occurred_at") if isinstance(document, dict) else None
    return occurred if isinstance(occurred, str) else None


def _event_date(rows: Sequence[dict[str, Any]], facts: dict[str, Any]) -> str | None:
    """The UTC date of `occurred_at` (the Parquet partition) from the SQL row or the enriched record."""
    from mic_pipeline.ops.warehouse_probe import as_utc

    for text in [*(row["occurred_at"] for row in rows), facts.get("occurred_at")]:
        try:
            when = as_utc(text)
        except ValueError:
            continue
        if when is not None:
            return when.date().isoformat()
    return None


def outcome(document: dict[str, Any]) -> str:
    """One line: accepted / accepted after waiting for its member / parked / dead-lettered: R /
    quarantined / never seen (or not found, when the answer is incomplete)."""
    inputs = document["inputs"]
    sql, claims = document["sql"], document["parquet"]["claims"]
    kept = [q["sink"] for q in sql["quarantined"]]
    kept += ["parquet" for c in claims if c["status"] == "quarantined"]
    if any(i["role"] == "parked" for i in inputs):
        return "parked: waiting for its member"
    decided = [i for i in inputs if i["role"] == "decided"]
    letters = sql["dead_letters"]
    for entry in decided:
        wait = " after waiting for its member" if entry.get("after_waiting") else ""
        if entry["decision"] == "ok":
            return f"quarantined by the quality gate ({', '.join(kept)})" if kept else f"accepted{wait}"
        return f"dead-lettered: {entry['decision']}{wait}"
    if letters:
        return f"dead-lettered: {letters[0]['reason']}"
    if kept:
        return f"quarantined by the quality gate ({', '.join(kept)})"
    if sql["rows"] or any(c["status"] in ("landed", "released") for c in claims):
        return "accepted"
    return "never seen" if document["complete"] else "not found (incomplete: see the notes)"


def trace_company(settings: Settings, inn: str, since: datetime, limit: int = 100) -> dict[str, Any]:
    """A company's events since `since`, newest first, at most `limit`: landed rows (accepted), dead
    letters (reason, detail) and quarantined rows, from the SQL warehouse's indexes."""
    from mic_pipeline.ops.trace_warehouse import sql_company

    sql = sql_company(settings.database_url, inn, since, limit)
    events: list[dict[str, Any]] = [
        {**row, "outcome": "accepted", "at": row["landed_at"]} for row in sql.rows
    ]
    events.extend(
        {
            "event_id": letter["event_id"],
            "event_type": letter["event_type"],
            "outcome": f"dead-lettered: {letter['reason']}",
            "detail": letter["detail"],
            "at": letter["failed_at"],
            "original": letter["original"],
        }
        for letter in sql.dead_letters
    )
    events.extend(
        {
            "event_id": kept["event_id"],
            "event_type": kept["event_type"],
            "table": kept["table"],
            "outcome": "quarantined by the quality gate (sql)",
            "detail": "; ".join(kept["failures"]),
            "at": kept["quarantined_at"],
        }
        for kept in sql.quarantined
    )
    events.sort(key=lambda e: e["at"] or "", reverse=True)
    notes = ["events still parked in the stream are not listed (the stream answers by event_id)"]
    if not sql.available:
        notes.insert(0, f"no SQL warehouse at {settings.database_url}")
    if sql.error is not None:
        notes.insert(0, f"SQL warehouse unreachable: {sql.error}")
    return {
        "company_id": inn,
        "since": since.isoformat(),
        "events": events[:limit],
        "more": max(0, len(events) - limit),
        "notes": notes,
    }
