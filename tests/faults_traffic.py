"""The traffic of a fault test and what the broker answered for each record.

Records are the simulator's (every dead-letter class, re-sent duplicates, full lifecycles) with the
hostile values of the Armour issue (`schemas_hostile`, those that fail to decode) mixed in. They are
handed to the project's `EventPublisher` (acks=all, idempotent) with a delivery callback, so each
`Sent` record knows where it was written (partition, offset) or why it was not acknowledged.

`probes` are records whose outcome depends on no other record (first `member.joined` of companies
of another population, and contract violations): a test that expects some records to fail uses
them, because a failed lifecycle event would change the outcome of its successors.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from schemas_hostile import hostile_values

from mic_pipeline.config import Settings
from producers.ground_truth import VALID
from producers.population import build_population
from producers.publisher import Delivery, EventPublisher, PublishError
from producers.simulator import SimRecord, SimulationConfig, generate
from schemas.decode import DecodeFailure, decode_event

HOSTILE_SIZE = 100_000
HOSTILE_TOPIC = "mic.orders"
NOT_HANDED = "not handed to the producer"
INTRINSIC = frozenset({"malformed", "unknown_event_type", "unsupported_version", "schema_violation"})
"""Dead-letter reasons decided from the record alone."""


@dataclass
class Sent:
    """One record handed to the producer, and the broker's answer."""

    seq: int
    topic: str
    """Logical topic (no prefix)."""
    key: bytes | None
    value: bytes
    expected: str
    """`valid`, `duplicate` or the dead-letter reason."""
    event_id: str | None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None
    answered: bool = False
    handed: bool = False
    """Handed to the producer (a stopped sender leaves the rest of its batch unsent)."""

    @property
    def acknowledged(self) -> bool:
        return self.answered and self.error is None


def hostile_records() -> list[tuple[str, bytes | None, bytes, str, str | None]]:
    """(topic, key, value, expected reason, event id) of every hostile value that fails to decode."""
    records: list[tuple[str, bytes | None, bytes, str, str | None]] = []
    for value in hostile_values(HOSTILE_SIZE).values():
        failure = decode_event(value, topic=HOSTILE_TOPIC)
        if isinstance(failure, DecodeFailure):
            records.append((HOSTILE_TOPIC, None, value, failure.reason.value, failure.event_id))
    return records


@dataclass
class Traffic:
    """Every record a test sends, in the order handed to the producer."""

    settings: Settings
    seed: int = 1
    invalid_fraction: float = 0.05
    scale: float = 0.2
    records: list[Sent] = field(default_factory=list)
    refused: int = 0
    """Records the publisher refused to take (`send(keep_going=True)`): never handed over."""
    _stream: Iterator[SimRecord] | None = None
    _hostile: list[tuple[str, bytes | None, bytes, str, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        config = SimulationConfig(seed=self.seed, scale=self.scale, invalid_fraction=self.invalid_fraction)
        self._stream = generate(config)
        self._hostile = hostile_records()

    def _new(self, topic: str, key: bytes | None, value: bytes, expected: str, event_id: str | None) -> Sent:
        sent = Sent(len(self.records), topic, key, value, expected, event_id)
        self.records.append(sent)
        return sent

    def take(self, count: int, *, hostile: int = 0) -> list[Sent]:
        """The next `count` simulated records with `hostile` hostile ones spread among them."""
        assert self._stream is not None
        batch: list[Sent] = []
        every = count // hostile if hostile else 0
        for index, record in enumerate(itertools.islice(self._stream, count)):
            truth = record.truth
            batch.append(self._new(truth.topic, record.key, record.value, truth.expected, truth.event_id))
            if every and index % every == every - 1 and self._hostile:
                batch.append(self._new(*self._hostile.pop(0)))
        return batch

    def probes(self, count: int, *, seed: int = 1_000_003, valid_only: bool = False) -> list[Sent]:
        """`count` records with outcomes independent of every other record (module doc); only the
        first `member.joined` events with `valid_only`."""
        ours = build_population(random.Random(f"{self.seed}/population"), self.scale).issued_inns
        joined: set[str] = set()
        batch: list[Sent] = []
        config = SimulationConfig(seed=seed, scale=0.05, invalid_fraction=0.3, duplicate_fraction=0.0)
        for record in generate(config):
            truth = record.truth
            company = (record.key or b"").decode()
            joins = truth.expected == VALID and truth.event_type == "member.joined"
            if joins and company not in joined and company not in ours:
                joined.add(company)
            elif valid_only or truth.expected not in INTRINSIC:
                continue
            batch.append(self._new(truth.topic, record.key, record.value, truth.expected, truth.event_id))
            if len(batch) == count:
                return batch
        raise AssertionError("unreachable: the stream is endless")

    def resend(self, sent: Sent) -> Sent:
        """A new record with the bytes of `sent` (re-publishing one that failed)."""
        return self._new(sent.topic, sent.key, sent.value, sent.expected, sent.event_id)

    def answer(self, delivery: Delivery) -> None:
        """The publisher's delivery callback (I/O thread)."""
        assert isinstance(delivery.tag, int)
        sent = self.records[delivery.tag]
        with self._lock:
            sent.partition, sent.offset, sent.error = delivery.partition, delivery.offset, delivery.error
            sent.answered = True

    def send(self, batch: list[Sent], *, rate: float | None = None, timeout_s: float = 30.0,
             stop: threading.Event | None = None, keep_going: bool = False) -> None:
        """Hand `batch` to a new publisher (at `rate` records/s when given) and wait until every
        record is answered; a record the producer refused to take is answered as failed. The first
        refusal (`PublishError`: no metadata within `timeout_s`) ends the sending, unless
        `keep_going` -- an integrator that goes on through an outage (counted in `refused`)."""
        publisher = EventPublisher(self.settings, timeout_s=timeout_s, on_delivery=self.answer)
        began = time.monotonic()
        try:
            for index, sent in enumerate(batch):
                if stop is not None and stop.is_set():
                    break
                if rate:
                    time.sleep(max(0.0, began + index / rate - time.monotonic()))  # pacing, not a wait
                try:
                    publisher.publish_raw(sent.topic, sent.key, sent.value, tag=sent.seq)
                except PublishError:
                    if not keep_going:
                        raise
                    self.refused += 1
                    continue
                sent.handed = True
        finally:
            # a DeliveryError: each record the broker did not acknowledge was answered as failed
            with contextlib.suppress(PublishError):
                publisher.close()
            with self._lock:
                for sent in batch:
                    if not sent.answered:
                        sent.error, sent.answered = NOT_HANDED, True

    def send_in_background(self, batch: list[Sent], *, rate: float, timeout_s: float = 30.0,
                           keep_going: bool = False) -> Sender:
        """`send` in a thread (`Sender.join` waits and re-raises its error)."""
        sender = Sender(self, batch, rate, timeout_s, keep_going)
        sender.start()
        return sender

    # -- what was answered -------------------------------------------------------------------------

    def acknowledged(self) -> list[Sent]:
        return [sent for sent in self.records if sent.acknowledged]

    def failed(self) -> list[Sent]:
        """Handed to the producer and not acknowledged: they may or may not be in the topic."""
        return [sent for sent in self.records if sent.handed and not sent.acknowledged]

    def handed(self) -> list[Sent]:
        return [sent for sent in self.records if sent.handed]


class Sender(threading.Thread):
    """A background `Traffic.send`."""

    def __init__(self, traffic: Traffic, batch: list[Sent], rate: float, timeout_s: float,
                 keep_going: bool = False) -> None:
        super().__init__(daemon=True)
        self.traffic, self.batch, self.rate, self.timeout_s = traffic, batch, rate, timeout_s
        self.keep_going = keep_going
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.traffic.send(self.batch, rate=self.rate, timeout_s=self.timeout_s, stop=self.stopping,
                              keep_going=self.keep_going)
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout_s: float = 300.0) -> None:
        """Wait for the sender; raise what it raised."""
        self.join(timeout_s)
        assert not self.is_alive(), f"the producer thread did not finish within {timeout_s} s"
        if self.error is not None:
            raise self.error
