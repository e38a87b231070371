"""Sending simulated records at a steady rate for a set time, with progress and a summary.

`run_paced` is independent of Kafka: it calls `send` for each record, so the same loop drives the
publisher (`mic-pipeline simulate`) and tests. Record `i` (from 0) is due `i / rate` seconds after
the start; the loop sends whatever is due, then sleeps until the next record is due (at most 20 ms
at a time). It stops after `rate × duration` records, and waits out the rest of `duration`, so the
achieved rate is records / elapsed time. When sending cannot keep up (more than half a second of
records overdue) it says so once and keeps going as fast as it can; the run still ends at `duration`
(plus `GRACE_S`) and the summary reports the achieved rate. `rate = 0` sends as fast as possible
for `duration`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from producers.ground_truth import DUPLICATE, VALID
from producers.simulator import SimRecord

#: Records sent between two looks at the clock when sending flat out.
BURST = 256
MAX_SLEEP_S = 0.02
#: Overdue this long (in records' worth of time) means sending cannot keep up.
BEHIND_S = 0.5
#: A paced run may overrun `duration` by this much to send records that fell due just before its end
#: (a sleep can oversleep).
GRACE_S = 0.05


@dataclass
class RunSummary:
    """What a paced run produced, per valid event type and per expected dead-letter reason."""

    requested_rate: float
    duration_s: float
    records: int = 0
    elapsed_s: float = 0.0
    kept_up: bool = True
    valid_by_type: Counter[str] = field(default_factory=Counter)
    invalid_by_reason: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0

    def count(self, record: SimRecord) -> None:
        self.records += 1
        expected = record.truth.expected
        if expected == VALID:
            self.valid_by_type[record.truth.event_type or ""] += 1
        elif expected == DUPLICATE:
            self.duplicates += 1
        else:
            self.invalid_by_reason[expected] += 1

    @property
    def achieved_rate(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def progress_line(self) -> str:
        invalid = sum(self.invalid_by_reason.values())
        return (f"{self.elapsed_s:6.1f}s {self.records} records ({self.achieved_rate:.0f}/s), "
                f"invalid {invalid}, duplicates {self.duplicates}")

    def report(self) -> str:
        """The human-readable final summary."""
        requested = f"requested {self.requested_rate:g}/s" if self.requested_rate > 0 else "unthrottled"
        lines = [f"records: {self.records} in {self.elapsed_s:.2f}s, "
                 f"achieved {self.achieved_rate:.1f}/s ({requested})"]
        if not self.kept_up:
            lines.append(f"could not keep up with {self.requested_rate:g}/s: "
                         f"the producer's limit here is about {self.achieved_rate:.0f}/s")
        lines.append(f"valid events: {sum(self.valid_by_type.values())}")
        lines += [f"  {name}: {n}" for name, n in sorted(self.valid_by_type.items())]
        lines.append(f"invalid records: {sum(self.invalid_by_reason.values())}")
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.invalid_by_reason.items())]
        lines.append(f"duplicates: {self.duplicates}")
        return "\n".join(lines)


def run_paced(
    records: Iterator[SimRecord], send: Callable[[SimRecord], None], *, rate: float, duration_s: float,
    progress: Callable[[RunSummary], None] | None = None, progress_every_s: float = 5.0,
    warn: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> RunSummary:
    """Send records from `records` at `rate` per second for `duration_s` seconds (see module doc).

    `progress` is called every `progress_every_s` seconds (it may raise to abort the run, e.g. on a
    delivery failure); `warn` once if sending falls behind.
    """
    if rate < 0 or duration_s <= 0:
        raise ValueError("rate must be >= 0 and duration positive")
    summary = RunSummary(requested_rate=rate, duration_s=duration_s)
    total = round(rate * duration_s) if rate > 0 else None
    start = clock()
    deadline = start + duration_s + (GRACE_S if total is not None else 0.0)
    next_progress = start + progress_every_s
    while True:
        now = clock()
        summary.elapsed_s = now - start
        if now >= deadline or (total is not None and summary.records >= total):
            break
        if progress is not None and now >= next_progress:
            progress(summary)
            next_progress += progress_every_s
        due = summary.records + BURST if total is None else min(total, int(summary.elapsed_s * rate) + 1)
        for _ in range(min(BURST, due - summary.records)):
            record = next(records, None)
            if record is None:
                summary.elapsed_s = clock() - start
                return summary
            send(record)
            summary.count(record)
            if clock() >= deadline:
                break
        if total is None:
            continue
        overdue_s = clock() - start - summary.records / rate  # now: a burst may have taken long
        if overdue_s > BEHIND_S and summary.kept_up:
            summary.kept_up = False
            if warn is not None:
                warn(f"cannot keep up with {rate:g} records/s: sending as fast as possible")
        wait = start + summary.records / rate - clock()
        if wait > 0:
            sleep(min(wait, MAX_SLEEP_S))
    remaining = start + duration_s - clock()
    if remaining > 0:
        sleep(remaining)
    summary.elapsed_s = clock() - start
    return summary
