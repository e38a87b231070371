"""The verdicts the demo's web page gave while the traffic flowed and while the pipeline drained.

A thread asks the page's `/api/status` (the operators' view: the lag rules judged over the page's own
history, freshness, components) every `interval_s` and tallies the verdicts per phase; the summary
prints them, with each distinct reason of a verdict that was not OK.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from mic_pipeline.config import Settings

INTERVAL_S = 2.0


@dataclass
class VerdictWatch:
    """Polls `url` (the page's `/api/status`) on a daemon thread between `start()` and `stop()`."""

    url: str
    interval_s: float = INTERVAL_S
    phase: str = "traffic"
    seen: dict[str, Counter[str]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="demo-verdicts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def sample(self) -> None:
        """One question to the page; an unanswered one is counted as an error, not a verdict."""
        try:
            with urllib.request.urlopen(self.url, timeout=30) as response:
                document = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            self.errors[str(getattr(error, "reason", None) or error)] += 1
            return
        verdict = str(document.get("verdict"))
        self.seen.setdefault(self.phase, Counter())[verdict] += 1
        if verdict != "OK":
            self.reasons.update(f"{verdict}: {reason}" for reason in document.get("reasons", []))

    def wait_components_ready(self, timeout_s: float) -> None:
        """Wait until the page reports every component ready (a sink answers its health endpoint a
        moment before its runner starts, then says "starting"); `TimeoutError` naming those that are
        not, after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        waiting: list[str] = ["the web page"]
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=30) as response:
                    components = json.loads(response.read()).get("components", [])
            except (urllib.error.URLError, OSError, ValueError) as error:
                waiting = [f"the web page ({error})"]
            else:
                waiting = [f"{c['component']} ({c['status']})" for c in components if c["status"] != "ready"]
                if components and not waiting:
                    return
            self._stop.wait(0.5)
        raise TimeoutError(f"not ready after {timeout_s:.0f} s: {', '.join(waiting)}")

    @staticmethod
    def wait_groups_joined(settings: Settings, groups: Sequence[str], timeout_s: float) -> None:
        """Wait until every consumer group in `groups` is Stable with a member: a sink joins its group
        only after its start-up (schema upgrade, claim index) is done, while its health endpoint may
        answer ready a moment before that start-up begins. `TimeoutError` naming the others."""
        from mic_pipeline.infra.topics import admin_client

        deadline = time.monotonic() + timeout_s
        waiting = list(groups)
        with admin_client(settings) as admin:
            while True:
                described = admin.describe_groups(list(groups))
                waiting = [
                    f"{g} ({described.get(g, {}).get('group_state', 'unknown')})"
                    for g in groups
                    if described.get(g, {}).get("group_state") != "Stable" or not described[g].get("members")
                ]
                if not waiting or time.monotonic() >= deadline:
                    break
                time.sleep(0.5)
        if waiting:
            raise TimeoutError(f"consumer groups not joined after {timeout_s:.0f} s: {', '.join(waiting)}")

    def all_ok(self) -> bool:
        return bool(self.seen) and all(set(counts) == {"OK"} for counts in self.seen.values())

    def summary(self, prefix: str) -> list[str]:
        """Lines of the demo's summary (`prefix` removed from group and topic names)."""
        lines = []
        for phase, counts in self.seen.items():
            tally = ", ".join(f"{verdict} x{n}" for verdict, n in counts.most_common())
            lines.append(f"verdicts of the web page while {phase}: {tally}")
        if not self.seen:
            lines.append("verdicts of the web page: none read")
        lines.extend(
            f"  {n} x {reason.replace(prefix, '')}" for reason, n in self.reasons.most_common(10)
        )
        lines.extend(f"  status unavailable {n} x: {error}" for error, n in self.errors.most_common(3))
        return lines
