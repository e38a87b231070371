"""`mic-pipeline demo`: the whole pipeline on one machine, fed by the simulator, checked against its
ground truth.

Steps: (1) reuse the broker answering at `MIC_KAFKA_BOOTSTRAP`, else fetch and start one in
`<dir>/state` (stopped at the end); (2) create the run's topics under a fresh prefix
`demo<YYYYmmddHHMMSS>.`; (3) start the stream worker, both sinks and the web page under the
supervisor (`mic_pipeline.ops.supervisor`), the warehouse being `<dir>/warehouse` (Parquet and a
SQLite file; `--database-url` names another, empty, SQL database instead: `MIC_DATABASE_URL` is
deliberately ignored so a demo never writes into a real warehouse); (4) simulate traffic with a
ground truth; (5) wait until every consumer group has drained and the warehouse reconciles, or the
timeout; (6) print the summary, write the report; (7) stop everything, delete the run's topics and
consumer groups (with `--keep-running`, only after Ctrl-C or SIGTERM).

Isolation: each run gets its own topic prefix (and so its own consumer groups and stream state) and
starts from an empty `<dir>/warehouse`, `<dir>/report` and ground truth, so repeated demos never mix;
the previous run's outputs are replaced.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mic_pipeline.config import Settings
from mic_pipeline.text import printable

QUICK = {"rate": 200.0, "duration": 12.0, "scale": 0.05, "member_wait": 8.0, "timeout": 90.0}
DEFAULTS = {"rate": 200.0, "duration": 150.0, "scale": 0.1, "member_wait": 20.0, "timeout": 600.0}


def register_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `demo`."""
    demo = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on simulated traffic and reconcile it against the ground truth",
        description="Brings up Kafka (or reuses the one at MIC_KAFKA_BOOTSTRAP), runs the stream, both "
        "sinks and the web page, simulates platform traffic with some bad events, waits until "
        "everything has drained, prints a reconciled summary and writes the analysts' report. "
        "Exit 0 only when produced = landed + dead letters + duplicates.",
    )
    demo.add_argument("--dir", type=Path, default=Path("demo"), help="output directory (default ./demo)")
    demo.add_argument("--quick", action="store_true", help="a short run for tests (about a minute in all)")
    demo.add_argument("--rate", type=float, help=f"records per second (default {DEFAULTS['rate']:.0f})")
    demo.add_argument(
        "--duration", type=float, help=f"seconds of traffic (default {DEFAULTS['duration']:.0f})"
    )
    demo.add_argument(
        "--scale", type=float, help=f"member population factor (default {DEFAULTS['scale']}: 2,271 members)"
    )
    demo.add_argument(
        "--invalid-fraction", type=float, default=0.02, help="share of invalid records (default 0.02)"
    )
    demo.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    demo.add_argument(
        "--member-wait",
        type=float,
        metavar="S",
        help=f"how long the stream holds an event for a late member (default {DEFAULTS['member_wait']:.0f})",
    )
    demo.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"give up waiting for the drain after S seconds (default {DEFAULTS['timeout']:.0f})",
    )
    demo.add_argument(
        "--web-port", type=int, default=8080, help="the web page's port (default 8080; 0: free)"
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the pipeline and web page up at the end, until Ctrl-C",
    )
    demo.add_argument(
        "--database-url",
        metavar="URL",
        help="an empty SQL database for the warehouse instead of <dir>/warehouse/warehouse.db",
    )
    demo.set_defaults(handler=run_demo)


@dataclass(frozen=True)
class DemoPlan:
    """Resolved parameters of one demo run."""

    directory: Path
    rate: float
    duration_s: float
    scale: float
    invalid_fraction: float
    seed: int
    member_wait_s: float
    timeout_s: float
    web_port: int
    keep_running: bool
    database_url: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoPlan:
        base = QUICK if args.quick else DEFAULTS

        def pick(name: str, given: float | None) -> float:
            return base[name] if given is None else given

        return cls(
            directory=args.dir.resolve(),
            rate=pick("rate", args.rate),
            duration_s=pick("duration", args.duration),
            scale=pick("scale", args.scale),
            invalid_fraction=args.invalid_fraction,
            seed=args.seed,
            member_wait_s=pick("member_wait", args.member_wait),
            timeout_s=pick("timeout", args.timeout),
            web_port=args.web_port or free_port(),
            keep_running=args.keep_running,
            database_url=args.database_url,
        )

    @property
    def ground_truth(self) -> Path:
        return self.directory / "ground_truth.jsonl"

    @property
    def report_dir(self) -> Path:
        return self.directory / "report"

    @property
    def log_file(self) -> Path:
        return self.directory / "logs" / "pipeline.log"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def say(message: str) -> None:
    """One progress line of the demo on stdout (escaped: it can quote group names, errors)."""
    print(f"demo [{datetime.now(UTC):%H:%M:%S}] {printable(message)}", flush=True)


def demo_settings(plan: DemoPlan, environ: dict[str, str]) -> Settings:
    """The run's settings: the environment's broker, the demo's database, prefix and directories."""
    base = Settings.from_env(environ)
    warehouse = plan.directory / "warehouse"
    database_url = plan.database_url or f"sqlite:///{warehouse / 'warehouse.db'}"
    return dataclasses.replace(
        base,
        warehouse_dir=warehouse,
        database_url=database_url,
        topic_prefix=f"demo{datetime.now(UTC):%Y%m%d%H%M%S}.",
        state_dir=plan.directory / "state",
    )


def reset_outputs(plan: DemoPlan) -> None:
    """Remove the previous run's warehouse, report, ground truth, stream state and logs."""
    for path in (plan.directory / "warehouse", plan.report_dir, plan.directory / "state" / "streams"):
        shutil.rmtree(path, ignore_errors=True)
    plan.ground_truth.unlink(missing_ok=True)
    plan.log_file.parent.mkdir(parents=True, exist_ok=True)
    plan.log_file.unlink(missing_ok=True)


@contextmanager
def kafka_broker(settings: Settings) -> Iterator[bool]:
    """Reuse the broker at `settings.kafka_bootstrap` or start one in `settings.state_dir` and stop it on
    exit; yields whether it was started here."""
    from mic_pipeline.infra.kafka_broker import BrokerPaths, answers_metadata, start_broker, stop_broker
    from mic_pipeline.infra.kafka_config import broker_config_from_bootstrap
    from mic_pipeline.infra.kafka_dist import fetch_kafka

    if answers_metadata(settings):
        say(f"reusing the Kafka broker at {settings.kafka_bootstrap}")
        yield False
        return
    say(f"no broker at {settings.kafka_bootstrap}: starting one (state in {settings.state_dir / 'kafka'})")
    paths = BrokerPaths.in_state_dir(settings.state_dir)
    dist = fetch_kafka(settings.cache_dir, progress=say)
    pid = start_broker(dist, paths, broker_config_from_bootstrap(settings.kafka_bootstrap), progress=say)
    say(f"Kafka started (pid {pid})")
    try:
        yield True
    finally:
        say(f"stopping the Kafka broker: {stop_broker(paths).value}")


def simulate(plan: DemoPlan, environment: dict[str, str], log: Callable[[str], None]) -> None:
    """Run `mic-pipeline simulate` with a ground truth; its progress lines go to `log`."""
    command = [
        sys.executable, "-m", "mic_pipeline.cli", "simulate",
        "--rate", str(plan.rate), "--duration", str(plan.duration_s), "--scale", str(plan.scale),
        "--invalid-fraction", str(plan.invalid_fraction), "--seed", str(plan.seed),
        "--ground-truth", str(plan.ground_truth),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            log(line.rstrip("\n"))
    finally:  # interrupted: do not leave the simulator publishing
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)
    if process.returncode != 0:
        raise RuntimeError(f"the simulator exited with status {process.returncode}")


def delete_run_topics(settings: Settings) -> None:
    """Delete the run's topics and consumer groups (everything named with its prefix); a failure is
    reported, not raised (the run's outcome stands)."""
    from kafka.errors import KafkaError

    from mic_pipeline.infra.topics import admin_client

    prefix = settings.topic_prefix
    try:
        with admin_client(settings) as admin:
            groups = [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(prefix)]
            if groups:
                admin.delete_groups(groups)
            topics = [t for t in admin.list_topics() if t.startswith(prefix)]
            if topics:
                admin.delete_topics(topics)
    except KafkaError as error:
        say(f"could not delete the run's topics ({prefix}*): {error}")
        return
    say(f"deleted the run's {len(topics)} topics and {len(groups)} consumer groups")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_demo(args: argparse.Namespace) -> int:
    """`mic-pipeline demo`."""
    from mic_pipeline.ops.demo_run import DemoRun

    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: through the `finally` below
    plan = DemoPlan.from_args(args)
    plan.directory.mkdir(parents=True, exist_ok=True)
    reset_outputs(plan)
    settings = demo_settings(plan, dict(os.environ))
    started = time.monotonic()
    say(
        f"{plan.rate:.0f} records/s for {plan.duration_s:.0f} s, {plan.invalid_fraction:.0%} invalid, "
        f"population x{plan.scale}; topic prefix {settings.topic_prefix}; output in {plan.directory}"
    )
    with kafka_broker(settings):
        run = DemoRun(plan, settings)
        try:
            code = run.execute()
            if plan.keep_running and run.supervisor is not None and code != 2:
                say(f"--keep-running: web page on http://127.0.0.1:{plan.web_port}/ ; Ctrl-C to stop")
                run.wait_for_interrupt()
        finally:  # also on Ctrl-C: the children run in their own sessions and would outlive us
            run.stop()
            delete_run_topics(settings)
    say(f"finished in {time.monotonic() - started:.0f} s, exit status {code}")
    return code
