"""One demo run once the broker is there: topics, supervised pipeline, traffic, drain, summary, report
(the steps 2–6 of `mic_pipeline.ops.demo`)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from typing import IO

from mic_pipeline.config import Settings
from mic_pipeline.ops.children import (
    PipelinePorts,
    pipeline_children,
    pipeline_groups,
    settings_environment,
)
from mic_pipeline.ops.demo import DemoPlan, free_port, say, simulate
from mic_pipeline.ops.demo_verdicts import VerdictWatch
from mic_pipeline.ops.reconcile import (
    Expected,
    Landed,
    Reconciliation,
    expected_from,
    format_summary,
    reconcile,
)
from mic_pipeline.ops.supervisor import ChildDied, Supervisor
from mic_pipeline.text import printable

READY_TIMEOUT_S = 180.0
_BEHIND = re.compile(r"^(\S+) \S+: (\d+) records behind")
PROGRESS_EVERY_S = 15.0


def database_is_empty(database_url: str) -> bool:
    """True when the warehouse at `database_url` holds no event and no dead letter (or no tables)."""
    from mic_pipeline.ops.warehouse_counts import sql_counts

    by_family, reasons, _ = sql_counts(database_url)
    return not any(by_family.values()) and not any(reasons.values())


def summarize_pending(pending: list[str], prefix: str) -> str:
    """`drain`'s pending lines, lag summed per consumer group, other conditions as they are (without
    the run's topic prefix): "mic-streams 1,200 records behind; mic-sink-sql: no committed offsets yet"."""
    behind: dict[str, int] = {}
    other: list[str] = []
    for line in pending:
        match = _BEHIND.match(line)
        if match:
            group = match.group(1).removeprefix(prefix)
            behind[group] = behind.get(group, 0) + int(match.group(2))
        else:
            other.append(line.replace(prefix, ""))
    parts = [f"{group} {n:,} records behind" for group, n in sorted(behind.items())]
    return "; ".join(parts + other)


class DemoRun:
    """Runs steps 2–6 of the demo; `stop()` stops the pipeline (idempotent)."""

    def __init__(self, plan: DemoPlan, settings: Settings) -> None:
        self.plan = plan
        self.settings = settings
        # the stream is configured by its flags alone (an inherited MIC_STREAMS_APP_ID: runs share a group)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("MIC_STREAMS_")}
        self.environment = {**inherited, **settings_environment(settings)}
        self.ports = PipelinePorts(free_port(), free_port(), free_port(), plan.web_port)
        self.supervisor: Supervisor | None = None
        self.verdicts = VerdictWatch(f"http://127.0.0.1:{self.ports.web}/api/status")
        self._log: IO[str] | None = None
        self._last_progress = float("-inf")

    @property
    def aggregates_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.streams}/aggregates"

    def execute(self) -> int:
        """0 when the run reconciles, 1 when it does not, 2 when the pipeline could not run."""
        from mic_pipeline.infra.topics import create_topics

        if self.plan.database_url is not None and not database_is_empty(self.plan.database_url):
            say(f"FAILED: {self.plan.database_url} already holds events or dead letters; use an empty one")
            return 2
        create_topics(self.settings)
        say(f"created the topics {self.settings.topic('mic.*')}")
        self._log = self.plan.log_file.open("a", encoding="utf-8")
        children = pipeline_children(
            self.settings,
            self.ports,
            member_wait_s=self.plan.member_wait_s,
            groups=pipeline_groups(self.settings, self.environment),
        )
        self.supervisor = Supervisor(children, base_environment=self.environment, output=self._log)
        try:
            self.supervisor.start()
            self.supervisor.wait_ready(READY_TIMEOUT_S)
            self.verdicts.wait_groups_joined(
                self.settings, pipeline_groups(self.settings, self.environment), READY_TIMEOUT_S
            )
            self.verdicts.wait_components_ready(READY_TIMEOUT_S)
            say(
                f"pipeline up: stream (:{self.ports.streams}), SQL sink (:{self.ports.sql_metrics}), "
                f"Parquet sink (:{self.ports.parquet_metrics}), web page http://127.0.0.1:{self.ports.web}/"
            )
            say(f"simulating {self.plan.rate * self.plan.duration_s:,.0f} records...")
            self.verdicts.start()
            simulate(self.plan, self.environment, self._simulator_line)
            self.verdicts.phase = "draining"
            self.supervisor.check()
            expected = self._expected()
            landed, verdict = self._wait_until_settled(expected)
        except (ChildDied, TimeoutError, RuntimeError) as error:
            say(f"FAILED: {error} (logs: {self.plan.log_file})")
            return 2
        finally:
            self.verdicts.stop()
        summary = [printable(line) for line in format_summary(expected, landed, verdict)]
        summary += [printable(line) for line in self.verdicts.summary(self.settings.topic_prefix)]
        print("\n".join(["", *summary, ""]), flush=True)
        self._write_report()
        self._print_locations()
        return 0 if verdict.ok else 1

    def wait_for_interrupt(self) -> None:
        """Keep everything up until Ctrl-C or SIGTERM (or a child's death)."""
        assert self.supervisor is not None
        stop = threading.Event()
        handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.supervisor.wait(stop)
        except ChildDied as error:
            say(f"{error}")
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            if self.supervisor.killed:
                say(f"had to SIGKILL: {', '.join(self.supervisor.killed)}")
        if self._log is not None:
            self._log.close()
            self._log = None

    def _simulator_line(self, line: str) -> None:
        if self._log is not None:
            self._log.write(f"simulate | {line}\n")
        now = time.monotonic()
        if line.startswith("simulate:") and now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            say(line.removeprefix("simulate: ").strip())

    def _expected(self) -> Expected:
        from producers.ground_truth import read_ground_truth

        return expected_from(read_ground_truth(self.plan.ground_truth))

    def _wait_until_settled(self, expected: Expected) -> tuple[Landed, Reconciliation]:
        """Drain, then measure; repeat until it reconciles or the timeout (then the last measurement)."""
        from mic_pipeline.ops.drain import drain
        from mic_pipeline.ops.warehouse_counts import measure_landed

        say(
            f"waiting for the pipeline to drain (events of unknown members are held "
            f"{self.plan.member_wait_s:.0f} s; timeout {self.plan.timeout_s:.0f} s)"
        )
        began = time.monotonic()
        deadline = began + self.plan.timeout_s
        last_note = [began]

        def progress(pending: list[str]) -> None:
            now = time.monotonic()
            if now - last_note[0] >= PROGRESS_EVERY_S:
                last_note[0] = now
                say(f"still draining: {summarize_pending(pending, self.settings.topic_prefix)}")

        while True:
            assert self.supervisor is not None
            self.supervisor.check()
            remaining = max(1.0, deadline - time.monotonic())
            groups = pipeline_groups(self.settings, self.environment)
            result = drain(self.settings, groups, remaining, settle_s=3.0, progress=progress)
            landed = measure_landed(self.settings, self.aggregates_url)
            verdict = reconcile(expected, landed)
            if verdict.ok or time.monotonic() >= deadline:
                state = "drained" if result.drained else "NOT drained"
                say(f"{state} {time.monotonic() - began:.0f} s after the traffic ended")
                return landed, verdict
            time.sleep(2.0)

    def _write_report(self) -> None:
        from mic_pipeline.ops.report import write_report

        written = write_report(self.settings.database_url, self.plan.report_dir, seed_scale=self.plan.scale)
        say(f"report written: {written}")

    def _print_locations(self) -> None:
        web = f"http://127.0.0.1:{self.ports.web}/"
        web_note = "(up until Ctrl-C)" if self.plan.keep_running else "(stopped now; --keep-running keeps it)"
        lines = [
            "where to look:",
            f"  report        {self.plan.report_dir / 'index.html'} (and CSV files beside it)",
            f"  Parquet       {self.settings.warehouse_dir}/<table>/event_date=YYYY-MM-DD/",
            f"  database      {self.settings.database_url}",
            f"  web page      {web} {web_note}",
            f"  ground truth  {self.plan.ground_truth}",
            f"  logs          {self.plan.log_file}",
        ]
        print("\n".join(lines), flush=True)
