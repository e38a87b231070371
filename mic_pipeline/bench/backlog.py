"""The bench's input: one simulator backlog with its ground truth, and the enriched backlog.

Every stage reads the same records: `build_backlog` takes the first N records of one seeded
simulator stream (`producers.simulator`: invalid records of every dead-letter class, re-sent
duplicates); the stream goes on (`Backlog.rest`) for the fresh records of the latency runs.
`decide_offline` runs the stream's own decision code (`streams.processor.EventProcessor` over
plain dicts, in simulator order, no Kafka) over the backlog: its rate is a figure of its own, and
its outputs are the enriched rows and dead letters the sink stages are fed.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from mic_pipeline.bench.kafka import Record
from producers.ground_truth import DUPLICATE, VALID
from producers.simulator import SimRecord, SimulationConfig, generate
from schemas.topics import DEADLETTER_TOPIC, Family

FAMILY_OF_TOPIC = {family.topic: family for family in Family}


@dataclass
class Backlog:
    """The records every stage reads, what the pipeline must make of them, and the rest of the stream."""

    config: SimulationConfig
    records: list[Record]
    rest: Iterator[SimRecord]
    valid: Counter[str] = field(default_factory=Counter)
    """Valid events per family (the rows each event table must end up with)."""
    invalid: Counter[str] = field(default_factory=Counter)
    """Invalid records per expected dead-letter reason."""
    duplicates: int = 0
    members_joined: int = 0
    """Distinct companies with a valid `member.joined` in the backlog (the state's population)."""
    generate_s: float = 0.0

    @property
    def valid_total(self) -> int:
        return sum(self.valid.values())

    def summary(self) -> dict[str, object]:
        """The backlog's composition, for the results."""
        return {
            "records": len(self.records),
            "seed": self.config.seed,
            "scale": self.config.scale,
            "invalid_fraction": self.config.invalid_fraction,
            "clock_step_s": self.config.clock_step_s,
            "valid_by_family": dict(sorted(self.valid.items())),
            "invalid_by_reason": dict(sorted(self.invalid.items())),
            "duplicates": self.duplicates,
            "members_joined": self.members_joined,
            "mean_value_bytes": round(sum(len(v) for _, _, v in self.records) / max(1, len(self.records)), 1),
            "generate_s": round(self.generate_s, 2),
        }


def build_backlog(
    count: int, *, seed: int, scale: float, invalid_fraction: float, clock_step_s: int
) -> Backlog:
    """The first `count` records of the simulator stream of these parameters (`clock_step_s`: mean
    event-time step between valid events)."""
    config = SimulationConfig(
        seed=seed, scale=scale, invalid_fraction=invalid_fraction, clock_step_s=clock_step_s
    )
    started = time.perf_counter()
    stream = generate(config)
    backlog = Backlog(config, [], stream)
    joined: set[str] = set()
    for record in itertools.islice(stream, count):
        truth = record.truth
        backlog.records.append((truth.topic, record.key, record.value))
        if truth.expected == VALID:
            backlog.valid[FAMILY_OF_TOPIC[truth.topic].value] += 1
            if truth.event_type == "member.joined" and truth.key is not None:
                joined.add(truth.key)
        elif truth.expected == DUPLICATE:
            backlog.duplicates += 1
        else:
            backlog.invalid[truth.expected] += 1
    backlog.members_joined = len(joined)
    backlog.generate_s = time.perf_counter() - started
    return backlog


@dataclass
class Enriched:
    """What the stream's decision code makes of the backlog: the sinks' input."""

    rows: list[Record]
    dead_letters: list[Record]
    decide_s: float

    @property
    def records(self) -> list[Record]:
        return [*self.rows, *self.dead_letters]


def decide_offline(backlog: Backlog) -> Enriched:
    """Decide the backlog with `EventProcessor` over dicts (see the module docstring).

    Records are decided in simulator order (a member joins before it acts there), so nothing waits
    (`member_wait_s=0`). Raises `ValueError` if the rows are not exactly the valid events.
    """
    from mic_pipeline.gcpolicy import worker_gc
    from streams.processor import EventProcessor
    from streams.records import Position, SourceRecord
    from streams.replica import MemberReplica

    processor = EventProcessor({}, {}, MemberReplica(), member_wait_s=0, dedupe_days=7)
    rows: list[Record] = []
    letters: list[Record] = []
    offsets: Counter[str] = Counter()
    with worker_gc():  # the worker's collector thresholds (`mic_pipeline.gcpolicy`)
        started = time.perf_counter()
        for topic, key, value in backlog.records:
            offset = offsets[topic]
            offsets[topic] += 1
            outcome = processor.process(
                SourceRecord(topic, 0, offset, key, value), Position(topic, 0, offset), waited_s=0.0
            )
            for family, company_id, row in outcome.enriched:
                rows.append((family.enriched_topic, company_id.encode(), row))
            for letter_key, letter, _reason in outcome.dead_letters:
                letters.append((DEADLETTER_TOPIC, letter_key, letter))
        decide_s = time.perf_counter() - started
    if len(rows) != backlog.valid_total:
        raise ValueError(f"the decision code made {len(rows)} rows of {backlog.valid_total} valid events")
    return Enriched(rows, letters, decide_s)
