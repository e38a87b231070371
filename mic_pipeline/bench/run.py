"""One bench run: the backlog, every selected stage in order (sequentially), the result files."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mic_pipeline.bench.backlog import build_backlog, decide_offline
from mic_pipeline.bench.context import Context, Options
from mic_pipeline.bench.machine import load_average, machine_facts
from mic_pipeline.bench.names import ALL_STAGES, END_TO_END
from mic_pipeline.bench.peer_quix import __doc__ as QUIX_DOC
from mic_pipeline.bench.pipeline import end_to_end
from mic_pipeline.bench.report import derived_notes, figures, write_results
from mic_pipeline.bench.stages import peer_stage, sink_stage, worker_stage
from mic_pipeline.config import Settings

STAGES: dict[str, Callable[[Context], dict[str, Any]]] = {
    "aiokafka": lambda ctx: peer_stage(ctx, "aiokafka"),
    "faust": lambda ctx: peer_stage(ctx, "faust"),
    "quix": lambda ctx: peer_stage(ctx, "quix"),
    "worker_1": lambda ctx: worker_stage(ctx, 1),
    "worker_2": lambda ctx: worker_stage(ctx, 2),
    "sink_sqlite": lambda ctx: sink_stage(ctx, "sqlite"),
    "sink_postgres": lambda ctx: sink_stage(ctx, "postgres"),
    "sink_parquet": lambda ctx: sink_stage(ctx, "parquet"),
}
FULL_POPULATION = 22_709


@contextmanager
def broker(options: Options, log: Callable[[str], None]) -> Iterator[bool]:
    """Reuse the broker at `options.bootstrap`, or start one with the project's infra code (as
    `mic-pipeline demo` does) and stop it at the end; yields whether it was started here."""
    from mic_pipeline.infra.kafka_broker import BrokerPaths, answers_metadata, start_broker, stop_broker
    from mic_pipeline.infra.kafka_config import broker_config_from_bootstrap
    from mic_pipeline.infra.kafka_dist import fetch_kafka

    if answers_metadata(dataclasses.replace(Settings.from_env(), kafka_bootstrap=options.bootstrap)):
        log(f"reusing the Kafka broker at {options.bootstrap}")
        yield False
        return
    if not options.start_broker:
        raise RuntimeError(f"no Kafka broker answers at {options.bootstrap} (and --no-start-broker)")
    settings = Settings.from_env()
    paths = BrokerPaths.in_state_dir(settings.state_dir)
    log(f"no broker at {options.bootstrap}: starting one (state in {settings.state_dir / 'kafka'})")
    dist = fetch_kafka(settings.cache_dir, progress=log)
    start_broker(dist, paths, broker_config_from_bootstrap(options.bootstrap), progress=log)
    try:
        yield True
    finally:
        log(f"stopping the Kafka broker: {stop_broker(paths).value}")


def run_bench(options: Options, log: Callable[[str], None]) -> dict[str, Any]:
    """Measure every selected stage; write and return the result document."""
    started = time.monotonic()
    with broker(options, log):
        load_start = load_average()
        machine = machine_facts(options.bootstrap)
        log(f"building the backlog: {options.records:,} simulator records")
        backlog = build_backlog(
            options.records,
            seed=options.seed,
            scale=options.scale,
            invalid_fraction=options.invalid_fraction,
            clock_step_s=options.clock_step_s,
        )
        enriched = decide_offline(backlog)
        work = Path(tempfile.mkdtemp(prefix="mic-bench-"))
        base = dataclasses.replace(
            Settings.from_env(),
            kafka_bootstrap=options.bootstrap,
            partitions=options.partitions,
            topic_prefix="",
        )
        ctx = Context(options, base, uuid.uuid4().hex[:6], work, backlog, enriched, log)
        stages: dict[str, Any] = {
            "decision_code": _decision_code(backlog.summary()["records"], enriched.decide_s)
        }
        latency: list[dict[str, Any]] = []
        try:
            latency = _run_stages(ctx, stages)
        except BaseException:
            log(f"interrupted; the stages' logs are kept in {work}")
            raise
        failed = [name for name, stage in stages.items() if "failed" in stage]
        if failed:
            log(f"failed: {', '.join(failed)}; the stages' logs are kept in {work}")
        elif not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        load_end = load_average()
    document = {
        "machine": machine,
        "load_average": {"start": load_start, "end": load_end},
        "options": _options_json(options),
        "backlog": backlog.summary(),
        "stages": stages,
        "latency": latency,
        "figures": figures(stages, latency),
        "notes": notes(ctx, stages) + derived_notes(stages, latency),
        "wall_s": round(time.monotonic() - started, 1),
    }
    write_results(document, options.out)
    return document


def _run_stages(ctx: Context, stages: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the selected stages in order into `stages`; the latency runs (from `end_to_end`).

    A stage that fails is recorded as `{"failed": reason}` (its processes were stopped) and the next
    stage runs: one defect should not hide the other figures. The command then exits 1.
    """
    latency: list[dict[str, Any]] = []
    for name in ctx.options.stages:
        ctx.log(f"stage {name}")
        began = time.monotonic()
        try:
            if name == END_TO_END:
                stages[name], latency = end_to_end(ctx)
            else:
                stages[name] = STAGES[name](ctx)
        except Exception as error:  # recorded in the results and the exit status, see the docstring
            stages[name] = {"failed": f"{type(error).__name__}: {error}"}
            ctx.log(f"stage {name} FAILED: {stages[name]['failed']}")
            continue
        stages[name]["stage_wall_s"] = round(time.monotonic() - began, 1)
        ctx.log(f"stage {name}: {_headline(stages[name])} ({stages[name]['stage_wall_s']:.0f} s)")
    return latency


def _decision_code(records: object, seconds: float) -> dict[str, Any]:
    count = int(str(records))
    return {
        "events_per_s": round(count / seconds, 1),
        "records": count,
        "seconds": round(seconds, 3),
        "method": "in the bench process: streams.processor.EventProcessor over plain dicts on the backlog "
        "in simulator order (no Kafka, no waiting); its outputs are the sink stages' input",
    }


def _headline(stage: dict[str, Any]) -> str:
    for key in ("events_per_s", "rows_per_s"):
        if key in stage:
            return f"{stage[key]:,.0f} {key.replace('_per_s', '')}/s"
    return "done"


def _options_json(options: Options) -> dict[str, Any]:
    result = dataclasses.asdict(options)
    result["out"] = str(options.out)
    result.pop("postgres_url")  # may carry a password
    return result


def notes(ctx: Context, stages: dict[str, Any]) -> list[str]:
    """What the figures mean and what they leave out."""
    options = ctx.options
    result = [
        "Stages run one after another, each on its own topic prefix (fresh consumer groups and topics, "
        "deleted afterwards), each publishing the same backlog first with the project's publisher.",
        "Peak RSS = VmHWM of /proc/<pid>/status of each process of the stage, sampled while it lives "
        "(the peers also report their own at the end); the processes' CPU seconds are in the JSON.",
        "What the Quix Streams peer does not do that the stream worker does: "
        + " ".join(QUIX_DOC.split("the stream worker does:")[1].split("\n\n")[0].split()),
        "The worker decides `unknown_company` records only after MIC_STREAMS_MEMBER_WAIT_S "
        f"({options.member_wait_s:g} s here): they are parked in the state (their offsets committed), "
        "so their dead letters are not part of the measured windows.",
    ]
    if ctx.backlog.members_joined < FULL_POPULATION:
        result.append(
            f"Worker RSS is with {ctx.backlog.members_joined:,} members in state, not the full population "
            f"({FULL_POPULATION:,}): the backlog is too short for every member to join."
        )
    if END_TO_END in stages:
        result.append(
            "Latency is an upper bound: an event is stamped when the poll that first returns its row ends; "
            f"polls every {options.poll_interval_s:g} s (resolution = interval + query time, per rate in "
            "the JSON)."
        )
    if options.sink_args:
        result.append(f"Sinks ran with {' '.join(options.sink_args)} (--quick).")
    if not options.ramp:
        result.append(
            "No rate ramp in this run (--quick or --no-ramp): the highest rate that holds is among "
            "the fixed rates only."
        )
    skipped = [name for name in ALL_STAGES if name not in options.stages]
    if skipped:
        result.append(f"Stages not run: {', '.join(skipped)}.")
    return result
