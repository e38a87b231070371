"""Stream processor throughput: one faust worker, full path, simulator load, on the real broker.

Usage: `MIC_KAFKA_BOOTSTRAP=127.0.0.1:19092 .venv/bin/python bench/bench_streams.py [--records N]`

1. Publishes N simulator records (2% invalid, duplicates included) to fresh topics (own prefix).
2. Baseline in the same run: the pure decision code (`EventProcessor` over dicts, no Kafka) on the
   same records -- the cost of validation, de-duplication, rules, enrichment and aggregates alone.
3. Starts one worker (`mic-pipeline streams`) under cProfile and measures how long it takes to
   consume everything: events/s = N / (time from its first committed offset to all committed).
4. Stops the worker (SIGTERM, so cProfile writes its profile) and summarises where time went.

Writes `bench/results/streams.json` (and the raw profile next to it); with `--label L`,
`streams-L.json`, to compare a setting against the default in the same session.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import pstats
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "tests"))


def _committed(bootstrap: str, group: str, topics: list[str]) -> int:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic in topics and meta.offset > 0)


def _baseline(records: list[tuple[str, bytes | None, bytes]]) -> tuple[float, float]:
    """The pure decision code over dicts on the same records: (events/s, state writes in all)."""
    from streams.metered import STATE_WRITES, MeteredMapping
    from streams.processor import EventProcessor
    from streams.records import Position, SourceRecord
    from streams.replica import MemberReplica

    state = MeteredMapping({}, "baseline")
    processor = EventProcessor(state, {}, MemberReplica(), member_wait_s=0, dedupe_days=7)
    started = time.perf_counter()
    for offset, (topic, key, value) in enumerate(records):
        record = SourceRecord(topic, 0, offset, key, value)
        processor.process(record, Position(topic, 0, offset), waited_s=0.0)
    rate = len(records) / (time.perf_counter() - started)
    written = sum(
        sample.value
        for metric in STATE_WRITES.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["table"] == "baseline"
    )
    return rate, written


def _state_writes(port: int) -> dict[str, float]:
    """The worker's `mic_streams_state_writes_total` counters, as `table/kind/op` -> count."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        f"{s.labels['table']}/{s.labels['kind']}/{s.labels['op']}": s.value
        for family in text_string_to_metric_families(text)
        if family.name == "mic_streams_state_writes"
        for s in family.samples
        if s.name.endswith("_total")
    }


def _run_worker(
    settings: Any,
    state_dir: Path,
    inputs: list[str],
    total: int,
    *,
    app_id: str,
    profile: Path | None,
    writes: dict[str, float] | None = None,
) -> float | None:
    """Run one worker over all records (fresh consumer group); its events/s, None if it did not finish.

    `writes`, if given, receives the worker's state-write counters once everything is consumed.
    """
    from streams_kafka import free_port

    port = free_port()
    env = {
        **os.environ,
        "MIC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "MIC_TOPIC_PREFIX": settings.topic_prefix,
        "MIC_STATE_DIR": str(state_dir),
        "MIC_PARTITIONS": str(settings.partitions),
        "MIC_STREAMS_WEB_PORT": str(port),
        "MIC_STREAMS_MEMBER_WAIT_S": "5",
        "MIC_STREAMS_APP_ID": app_id,
    }
    command = [sys.executable, "-m", "mic_pipeline.cli", "streams"]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command[1:]]
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / f"{app_id}.log").open("wb") as log:
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        first: tuple[float, int] | None = None
        done_at: float | None = None
        deadline = time.monotonic() + 900
        try:
            while time.monotonic() < deadline and worker.poll() is None:
                committed = _committed(settings.kafka_bootstrap, app_id, inputs)
                now = time.monotonic()
                if committed and first is None:
                    first = (now, committed)
                if committed >= total:
                    done_at = now
                    if writes is not None:
                        writes.update(_state_writes(port))
                    break
                time.sleep(0.5)
        finally:
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
    if first is None or done_at is None or done_at <= first[0]:
        return None
    return (total - first[1]) / (done_at - first[0])


def _profile_summary(path: Path, limit: int = 25) -> list[dict[str, Any]]:
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}:{name}",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
                "tottime_share": round(tottime / total, 4) if total else 0.0,
            }
        )
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows[:limit]


def _cumulative(path: Path, limit: int = 30) -> str:
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("cumulative").print_stats(limit)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--label", default="", help="write streams-<label>.json (compare settings, e.g. faust env variables)"
    )
    args = parser.parse_args()

    from streams_kafka import produce

    from mic_pipeline.config import Settings
    from mic_pipeline.infra.topics import create_topics
    from producers.simulator import SimulationConfig, generate
    from schemas.topics import Family

    bootstrap = os.environ.get("MIC_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    state_dir = Path("/tmp") / prefix.rstrip(".")
    settings = Settings(
        kafka_bootstrap=bootstrap, topic_prefix=prefix, partitions=args.partitions, state_dir=state_dir
    )
    create_topics(settings)
    config = SimulationConfig(seed=5, invalid_fraction=0.02)
    records = [(r.truth.topic, r.key, r.value) for r in itertools.islice(generate(config), args.records)]
    published = time.perf_counter()
    produce(settings, records)
    publish_s = time.perf_counter() - published
    baseline, baseline_writes = _baseline(records)

    inputs = [settings.topic(f.topic) for f in Family]
    writes: dict[str, float] = {}
    plain = _run_worker(
        settings, state_dir, inputs, len(records), app_id=f"{prefix}plain", profile=None, writes=writes
    )
    name = f"streams-{args.label}" if args.label else "streams"
    profile = RESULTS / f"{name}.prof"
    profiled = _run_worker(
        settings, state_dir, inputs, len(records), app_id=f"{prefix}profiled", profile=profile
    )
    if plain is None or profiled is None:
        print("worker did not finish; see", state_dir, file=sys.stderr)
        return 1
    result = {
        "records": len(records),
        "invalid_fraction": config.invalid_fraction,
        "partitions": args.partitions,
        "publish_s": round(publish_s, 2),
        "worker_events_per_s": round(plain, 1),
        "worker_events_per_s_under_cprofile": round(profiled, 1),
        "pure_decision_events_per_s": round(baseline, 1),
        "state_writes_per_record": {key: round(n / len(records), 3) for key, n in sorted(writes.items())},
        "pure_decision_state_writes_per_record": round(baseline_writes / len(records), 3),
        "note": "one worker process on a 2-core machine shared with the broker; rate = records consumed "
        "between the first and the last commit observed, divided by that time",
        "profile_top_tottime": _profile_summary(profile) if profile.exists() else [],
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if profile.exists():
        (RESULTS / f"{name}_profile.txt").write_text(_cumulative(profile))
    print(json.dumps({k: v for k, v in result.items() if k != "profile_top_tottime"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
