"""The measured stages but end to end: the peers, the stream worker (1 and 2 processes), each sink.

Every stage gets its own topic prefix (`Context.settings`), publishes its input there, runs its
processes as children (peak RSS of each sampled until it is stopped), and deletes its topics and
consumer groups afterwards. How each figure is taken is in the stage's `method`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from mic_pipeline.bench.context import Context, free_port, http_json, sink_env, watch_commits, worker_env
from mic_pipeline.bench.kafka import Offsets, delete_stage, publish
from mic_pipeline.bench.procs import BenchError, Children, python_module, wait_for
from mic_pipeline.config import Settings
from schemas.topics import Family

PEER_METHODS = {
    "aiokafka": "one process (aiokafka): fetch batches of up to 5,000, msgspec-decode each record, produce "
    "its value to an output topic (acks=all), await the batch's deliveries, commit; clock from the "
    "first fetched batch to the commit after the last record",
    "faust": "one process (faust-streaming agent on the four input topics, raw bytes, msgspec decode, no "
    "output; faust's defaults but the worker's max poll records); clock inside the agent from the "
    "first record to the last",
    "quix": "one process (Quix Streams, RocksDB state): decode+validate (schemas.decode), de-duplicate by "
    "event_id, member lifecycle and enrichment from the company's own member state, produce the enriched "
    "row or dead letter, count per industry/region via group_by; clock from the first record decided "
    "to every record decided and counted",
}


def peer_stage(ctx: Context, kind: str) -> dict[str, Any]:
    """Peer `kind` (`aiokafka`, `faust`, `quix`) over the backlog, in its own process."""
    settings = ctx.settings(kind)
    published, publish_s = publish(settings, ctx.backlog.records)
    out = ctx.work / kind / "result.json"
    argv = python_module(
        "mic_pipeline.bench.peer", kind,
        "--bootstrap", settings.kafka_bootstrap, "--prefix", settings.topic_prefix,
        "--group", settings.topic(f"bench-{kind}"), "--expect", str(published),
        "--partitions", str(settings.partitions), "--work", str(ctx.work / kind / "data"), "--out", str(out),
    )  # fmt: skip
    try:
        with ctx.children(kind) as children:
            child = children.start(kind, argv)
            wait_for(out.exists, ctx.options.stage_timeout_s, f"the {kind} peer's result", children)
            child.sample()
        result: dict[str, Any] = json.loads(out.read_text())
    finally:
        delete_stage(settings)
    process = child.figures()
    process["peak_rss_mib"] = max(float(str(process["peak_rss_mib"])), result.pop("peak_rss_mib"))
    process["cpu_s"] = result.pop("cpu_s")
    return {
        "events_per_s": result.pop("events_per_s"),
        "records": result.pop("records"),
        "seconds": result.pop("seconds"),
        "publish_s": round(publish_s, 2),
        "method": PEER_METHODS[kind],
        "processes": [process],
        "details": result,
    }


def _owns_partitions(ports: list[int]) -> bool:
    for port in ports:
        document = http_json(f"http://127.0.0.1:{port}/health")
        if document is None or not document.get("partitions"):
            return False
    return True


def start_workers(
    ctx: Context, settings: Settings, children: Children, app_id: str, count: int, tree: Path | None = None
) -> list[int]:
    """Start `count` stream workers in group `app_id`; their web ports. `tree`: another code tree
    whose worker to run (its directory is then the workers' working directory and PYTHONPATH)."""
    ports = [free_port() for _ in range(count)]
    for index, port in enumerate(ports):
        env = worker_env(settings, app_id, port, ctx.options.member_wait_s)
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
        children.start(f"streams-{index + 1}", python_module("mic_pipeline.cli", "streams"), env, tree)
    return ports


def worker_stage(ctx: Context, count: int, tree: Path | None = None, label: str = "") -> dict[str, Any]:
    """`count` stream workers in one group over the backlog; events/s from the group's commits.
    `tree`: run another code tree's worker (`start_workers`), `label` naming its stage."""
    stage = f"worker_{count}{label}"
    settings = ctx.settings(stage)
    published, publish_s = publish(settings, ctx.backlog.records)
    app_id = settings.topic("mic-streams")
    inputs = [settings.topic(family.topic) for family in Family]
    try:
        with ctx.children(stage) as children, Offsets(settings) as offsets:
            ports = start_workers(ctx, settings, children, app_id, count, tree)
            window = watch_commits(
                offsets, app_id, inputs, published, children, timeout_s=ctx.options.stage_timeout_s,
                ready=lambda: count == 1 or _owns_partitions(ports),
            )  # fmt: skip
            owned = [
                sorted((http_json(f"http://127.0.0.1:{p}/health") or {}).get("partitions", [])) for p in ports
            ]
            children.sample()
    finally:
        delete_stage(settings)
    figures = window.figures()
    return {
        "events_per_s": figures.pop("per_s"),
        **figures,
        "publish_s": round(publish_s, 2),
        "partitions_per_worker": owned,
        "members_in_state": ctx.backlog.members_joined,
        "method": f"{count} `mic-pipeline streams` process(es) in one fresh group (MIC_STREAMS_APP_ID), "
        "backlog published before they start; committed offsets of the group on the four input "
        "topics polled every 0.25 s; events/s = records committed after the first commit seen"
        + (" with both workers owning partitions" if count > 1 else "")
        + " / time until all were committed",
        "processes": [child.figures() for child in children.started],
    }


SINK_KINDS = {"sqlite": "sql", "postgres": "sql", "parquet": "parquet"}


def sink_stage(ctx: Context, kind: str) -> dict[str, Any]:
    """One sink (`sqlite`, `postgres`, `parquet`) alone, with the quality gate, over the enriched
    backlog; rows/s from its group's commits, then the rows are counted in the warehouse."""
    from sinks.app import sink_topics

    stage = f"sink_{kind}"
    settings = ctx.settings(stage)
    schema = None
    if kind == "postgres":
        schema, url = create_schema(ctx.options.postgres_url)
        settings = _with_database(settings, url)
    sink = SINK_KINDS[kind]
    records = ctx.enriched.records if sink == "sql" else ctx.enriched.rows
    try:
        published, publish_s = publish(settings, records)
        group = settings.topic(f"sink-{kind}")
        topics = sink_topics(settings, "sql" if sink == "sql" else "parquet")
        with ctx.children(stage) as children, Offsets(settings) as offsets:
            port = free_port()
            argv = python_module(
                "mic_pipeline.cli", "sink", sink, "--group-id", group, "--metrics-port", str(port),
                *ctx.options.sink_args,
            )  # fmt: skip
            child = children.start(f"sink-{kind}", argv, sink_env(settings))
            window = watch_commits(
                offsets, group, topics, published, children, timeout_s=ctx.options.stage_timeout_s,
                reading=lambda: _is_ready(port),
            )  # fmt: skip
            child.sample()
        landed = (
            count_sql_rows(settings.database_url)
            if sink == "sql"
            else count_parquet_rows(settings.warehouse_dir)
        )
    finally:
        delete_stage(settings)
        if schema is not None:
            drop_schema(ctx.options.postgres_url, schema)
    expected = {
        "events": len(ctx.enriched.rows),
        "dead_letters": len(ctx.enriched.dead_letters) if sink == "sql" else 0,
    }
    if landed != expected:
        raise BenchError(f"sink {kind}: {landed} rows in the warehouse, expected {expected}")
    figures = window.figures()
    return {
        "rows_per_s": figures.pop("per_s"),
        **figures,
        "publish_s": round(publish_s, 2),
        "rows_in_warehouse": landed,
        "method": f"`mic-pipeline sink {sink}` (quality gate on, its default batch settings) in a fresh "
        "group over the enriched backlog (rows and, for SQL, dead letters) published before it starts; "
        "its /health/ready and committed offsets polled every 0.25 s; rows/s = all records / time from "
        "the first ready answer (quality gate loaded, warehouse prepared, group joined: reading) until "
        "all were committed; afterwards the rows are counted in the warehouse",
        "processes": [child.figures()],
    }


def _is_ready(port: int) -> bool:
    document = http_json(f"http://127.0.0.1:{port}/health/ready")
    return document is not None and document.get("status") == "ready"


def _with_database(settings: Settings, url: str) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, database_url=url)


def create_schema(url: str) -> tuple[str, str]:
    """A fresh PostgreSQL schema; (its name, the URL whose connections use it)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"micbench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, scoped.render_as_string(hide_password=False)


def drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        engine.dispose()


def count_sql_rows(url: str) -> dict[str, int]:
    """Rows in the four event tables and in `dead_letters`."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            events = sum(
                connection.execute(text(f"SELECT count(*) FROM {family.table}")).scalar_one()
                for family in Family
            )
            letters = connection.execute(text("SELECT count(*) FROM dead_letters")).scalar_one()
    finally:
        engine.dispose()
    return {"events": int(events), "dead_letters": int(letters)}


def count_parquet_rows(warehouse: Path) -> dict[str, int]:
    """Rows in the four event tables of the Parquet dataset."""
    import pyarrow.dataset as ds

    events = 0
    for family in Family:
        directory = warehouse / family.table
        if directory.exists():
            events += ds.dataset(directory, format="parquet", partitioning="hive").count_rows()
    return {"events": events, "dead_letters": 0}
