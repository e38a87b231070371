"""The platform simulator as a pure, Kafka-free library: `generate(config)` yields records to publish.

Each `SimRecord` carries the exact key and value bytes to send and its `GroundTruthRecord` (what the
pipeline must make of it). The stream is endless; take as many records as needed
(`itertools.islice`). For a given config the records are byte-identical from run to run.

Mixing: of all records, exactly `invalid_fraction` (up to rounding) are invalid ones, spread evenly
over the six dead-letter reasons (`producers.anomalies`), and `duplicate_fraction` (default a fifth
of `invalid_fraction`) re-send one of the last 64 valid records byte for byte (same event id:
contract rule 3, expected `"duplicate"`). Shares are kept with error-diffusion accumulators, so any
prefix of the stream is within one record of them. Valid events come from `producers.world.World`,
whose random generator nothing else draws from: the valid events of a seed do not depend on the
invalid share. The simulated clock advances with valid events only.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from producers.anomalies import AnomalySchedule
from producers.ground_truth import DUPLICATE, VALID, GroundTruthRecord, sha256_hex
from producers.population import build_population
from producers.world import SIMULATION_START, World
from schemas.encode import encode_event

DUPLICATE_WINDOW = 64


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of a simulated stream; `seed` fixes every random choice."""

    seed: int = 1
    scale: float = 1.0
    invalid_fraction: float = 0.0
    duplicate_fraction: float | None = None
    start: datetime = SIMULATION_START
    clock_step_s: int = 900

    def __post_init__(self) -> None:
        if not 0.0 <= self.invalid_fraction < 1.0:
            raise ValueError(f"invalid_fraction must be in [0, 1), got {self.invalid_fraction}")
        if not 0.0 <= self.resolved_duplicate_fraction < 1.0 - self.invalid_fraction:
            raise ValueError("duplicate_fraction must be in [0, 1 - invalid_fraction)")
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.clock_step_s < 2:
            raise ValueError(f"clock_step_s must be >= 2, got {self.clock_step_s}")

    @property
    def resolved_duplicate_fraction(self) -> float:
        """The duplicate share in effect (default: a fifth of the invalid share)."""
        if self.duplicate_fraction is None:
            return self.invalid_fraction / 5
        return self.duplicate_fraction


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One record to publish: `truth.topic` (logical), `key`, `value`, and its ground truth."""

    truth: GroundTruthRecord
    key: bytes | None
    value: bytes


def build_world(config: SimulationConfig) -> World:
    """The simulated platform at its start (population built, nobody joined yet)."""
    population = build_population(random.Random(f"{config.seed}/population"), config.scale)
    return World(population, random.Random(f"{config.seed}/events"), start=config.start,
                 clock_step_s=config.clock_step_s)


def generate(config: SimulationConfig) -> Iterator[SimRecord]:
    """The endless record stream of `config` (see the module docstring). The population is built
    here, before the first record is asked for, so a paced consumer does not start behind."""
    return _records(config, build_world(config))


def _records(config: SimulationConfig, world: World) -> Iterator[SimRecord]:
    anomaly_rng = random.Random(f"{config.seed}/anomalies")
    schedule = AnomalySchedule(anomaly_rng)
    recent: deque[SimRecord] = deque(maxlen=DUPLICATE_WINDOW)
    invalid_due = duplicate_due = 0.0
    seq = 0
    while True:
        seq += 1
        invalid_due += config.invalid_fraction
        duplicate_due += config.resolved_duplicate_fraction
        if invalid_due >= 1.0 and len(world.members.active) >= 2:
            invalid_due -= 1.0
            anomaly = schedule.next_builder()(world, anomaly_rng)
            truth = GroundTruthRecord(
                seq=seq, topic=anomaly.topic, key=anomaly.key.decode() if anomaly.key is not None else None,
                event_id=anomaly.event_id, event_type=anomaly.event_type, expected=anomaly.reason.value,
                value_sha256=sha256_hex(anomaly.value), variant=anomaly.variant)
            yield SimRecord(truth, anomaly.key, anomaly.value)
        elif duplicate_due >= 1.0 and recent:
            duplicate_due -= 1.0
            original = recent[anomaly_rng.randrange(len(recent))]
            truth = GroundTruthRecord(
                seq=seq, topic=original.truth.topic, key=original.truth.key, event_id=original.truth.event_id,
                event_type=original.truth.event_type, expected=DUPLICATE,
                value_sha256=original.truth.value_sha256)
            yield SimRecord(truth, original.key, original.value)
        else:
            event = world.next_event()
            value = encode_event(event)
            truth = GroundTruthRecord(
                seq=seq, topic=event.family.topic, key=event.company_id, event_id=event.event_id,
                event_type=event.event_type, expected=VALID, value_sha256=sha256_hex(value))
            record = SimRecord(truth, event.company_id.encode(), value)
            recent.append(record)
            yield record
