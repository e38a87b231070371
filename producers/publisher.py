"""`EventPublisher`: contract events into Kafka, validated before sending, with no silent loss.

The producer is kafka-python's `KafkaProducer` with `acks=all`, idempotence, lz4 compression and
batching tuned for throughput (`linger_ms`, 256 KiB batches). The record key is the event's
`company_id` (UTF-8) and the topic is the family's input topic with the run's prefix
(`Settings.topic`). Topics are never auto-created: a missing topic is an error, not a topic with
the broker's default layout.

Errors reach the caller in two ways:

- at `publish*` time, synchronously: `InvalidEventError` when the event breaks the contract (nothing
  is sent), `PublishError` when the producer cannot accept the record (broker unreachable, topic
  missing after `timeout_s`, record too large for the client);
- at `flush()` (and therefore `close()` and the end of a `with` block): `DeliveryError` listing the
  records the broker did not acknowledge. `raise_if_failed()` checks without waiting.

A record is *sent* only once the broker acknowledged it (`delivered`); one the broker did not
acknowledge (`failed_total`: refused, or no answer within the delivery timeout) may or may not be in
the topic -- Kafka cannot tell -- and is reported as failed, never as sent. With `on_delivery`, every
record handed over is answered by one `Delivery` (its `tag`, and where it was written or why not),
called from the producer's I/O thread: `mic-pipeline publish|simulate --delivery-report` write them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import (
    AuthorizationError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    UnknownError,
)

from mic_pipeline.config import Settings
from mic_pipeline.kafka_access import KafkaAccessError
from mic_pipeline.kafka_clients import explain_kafka_error, kafka_python_options
from mic_pipeline.kafka_python_compat import heal_producer_id_reset, producer_is_dead
from schemas.decode import DecodeFailure, decode_event
from schemas.encode import encode_event
from schemas.events import Event

log = logging.getLogger(__name__)

#: Details kept of failed deliveries (all are counted).
MAX_FAILURES_KEPT = 100
#: Records handed to the producer but not yet acknowledged or failed, before `publish*` waits
#: (kafka-python 3 has no `buffer_memory` bound of its own).
DEFAULT_MAX_PENDING = 50_000
#: Least time between two replacements of a producer kafka-python declared dead (during an outage a
#: new one may die again at once; meanwhile records sent fail immediately, and are reported failed).
RENEW_AFTER_S = 5.0


class PublishError(RuntimeError):
    """The producer could not take or deliver records."""


class InvalidEventError(PublishError, ValueError):
    """The event breaks the contract; it was not sent. `failure` says why (reason and detail)."""

    def __init__(self, failure: DecodeFailure) -> None:
        self.failure = failure
        event = f" (event_id {failure.event_id})" if failure.event_id else ""
        super().__init__(f"invalid event{event}: {failure.reason}: {failure.detail}")


@dataclass(frozen=True)
class DeliveryFailure:
    """One record the broker did not acknowledge."""

    topic: str
    key: bytes | None
    error: str


@dataclass(frozen=True)
class Delivery:
    """The outcome of one record handed to the producer: acknowledged at `partition`/`offset` of
    `topic` (physical name), or failed with `error`. `tag` is the caller's name for the record."""

    tag: object
    topic: str
    key: bytes | None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.error is None


class DeliveryError(PublishError):
    """Records were not delivered: `failed` in total, `failures` the first `MAX_FAILURES_KEPT`."""

    def __init__(self, failed: int, failures: list[DeliveryFailure]) -> None:
        self.failed = failed
        self.failures = failures
        first = failures[0] if failures else None
        example = f"; first: {first.topic} key={first.key!r}: {first.error}" if first else ""
        super().__init__(f"{failed} record(s) not delivered{example}")


def crc32c_accelerated() -> bool:
    """Whether kafka-python builds record batches with the C `crc32c` (about 16x faster than its
    pure-Python fallback)."""
    from kafka.record import default_records, util

    native = util.crc32c_c
    defaults = util.calc_crc32c.__defaults__ or (None,)
    return native is not None and default_records.calc_crc32c is util.calc_crc32c and defaults[0] is native


def missing_topics(settings: Settings, logical_topics: list[str], *, timeout_s: float = 30.0) -> list[str]:
    """The physical names of `logical_topics` that do not exist on the broker (`PublishError` if the
    broker cannot be reached within `timeout_s`).

    A broker of a cluster that has just died is still listed in the others' metadata, and the
    admin client may send its request there: a refused connection is retried until the timeout.
    So is a bootstrap that timed out: kafka-python picks a bootstrap server at random and waits out
    the growing backoff of a dead one it picks again, so with two of three brokers down one client
    spent a whole 5 s timeout on the dead two (a fault-stage run). Each attempt is a new client, so
    with a bootstrap budget of a third of the timeout, new random picks and reset backoffs."""
    servers = settings.kafka_bootstrap.split(",")
    deadline = time.monotonic() + timeout_s
    while True:
        left = max(0.001, deadline - time.monotonic())
        bootstrap_s = left if len(servers) == 1 else min(left, max(1.0, timeout_s / 3))
        try:
            existing = _list_topics(settings, int(bootstrap_s * 1000), int(left * 1000))
            break
        except KafkaAccessError as exc:
            raise PublishError(f"Kafka at {settings.kafka_bootstrap} refuses this client: {exc}") from exc
        except (KafkaConnectionError, KafkaTimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise PublishError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
            time.sleep(0.2)  # the next attempt asks another broker
        except KafkaError as exc:
            raise PublishError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    physical = [settings.topic(name) for name in logical_topics]
    return [name for name in physical if name not in existing]


def _list_topics(settings: Settings, bootstrap_ms: int, timeout_ms: int) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","),
                             **kafka_python_options(settings, bootstrap_timeout_ms=bootstrap_ms,
                                                    request_timeout_ms=timeout_ms))
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def producer_config(
    settings: Settings, *, compression: str = "lz4", linger_ms: int = 10, batch_size: int = 256 * 1024,
    timeout_s: float = 30.0, client_id: str = "mic-producer",
) -> dict[str, Any]:
    """The `KafkaProducer` configuration of the publisher (durable, idempotent, batched)."""
    timeout_ms = int(timeout_s * 1000)
    return {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": compression,
        "linger_ms": linger_ms,
        "batch_size": batch_size,
        "max_in_flight_requests_per_connection": 5,
        "allow_auto_create_topics": False,
        "max_block_ms": timeout_ms,
        "bootstrap_timeout_ms": timeout_ms,
        "request_timeout_ms": max(timeout_ms, 1000),
        "delivery_timeout_ms": max(2 * timeout_ms + linger_ms, 2000),
    }


def _forbid_topic_auto_creation(producer: Any) -> None:
    """Make `allow_auto_create_topics=False` effective: kafka-python 3.0.12 does not pass it on to
    the producer's cluster metadata, whose metadata requests then ask the broker to create any topic
    they name (a typo'd topic would silently appear with the broker's default layout)."""
    metadata = getattr(producer, "_metadata", None)
    config = getattr(metadata, "config", None)
    if isinstance(config, dict) and "allow_auto_create_topics" in config:
        config["allow_auto_create_topics"] = False
    else:
        log.warning("cannot disable topic auto-creation on this kafka-python version")


class EventPublisher:
    """Publishes contract events (validated) or raw records to the pipeline's topics.

    Use as a context manager: leaving the block flushes (raising `DeliveryError` on undelivered
    records) and closes the producer. Not thread-safe for concurrent `publish` calls.

    Memory stays bounded: with `max_pending` records unacknowledged, `publish*` waits until half of
    them are settled (`PublishError` if that takes longer than the delivery timeout).
    """

    def __init__(
        self, settings: Settings, *, timeout_s: float = 30.0, max_pending: int = DEFAULT_MAX_PENDING,
        overrides: Mapping[str, Any] | None = None, on_delivery: Callable[[Delivery], None] | None = None,
        **tuning: Any,
    ) -> None:
        if not crc32c_accelerated():
            log.warning("kafka-python is computing CRC32C in pure Python: install the crc32c package")
        self._settings = settings
        self._timeout_s = timeout_s
        self._max_pending = max_pending
        config = producer_config(settings, timeout_s=timeout_s, **tuning)
        config.update(overrides or {})
        self._config = config
        try:
            self._producer = self._new_producer()
        except KafkaError as exc:
            reason = explain_kafka_error(exc, settings)
            raise PublishError(f"cannot connect to Kafka at {settings.kafka_bootstrap}: {reason}") from exc
        self._renewed_at = time.monotonic()
        self.renewals = 0
        """Producers replaced after kafka-python declared theirs dead (`mic_pipeline.kafka_python_compat`)."""
        self._delivery_timeout_s = config["delivery_timeout_ms"] / 1000
        self._settled = threading.Condition()
        self._failures: list[DeliveryFailure] = []
        self._failed = 0
        self._failed_total = 0
        self._on_delivery = on_delivery
        self.sent = 0
        self.delivered = 0

    def _new_producer(self) -> KafkaProducer:
        producer = KafkaProducer(**kafka_python_options(self._settings, **self._config))
        _forbid_topic_auto_creation(producer)
        heal_producer_id_reset(producer)
        return producer

    def _renew_if_dead(self) -> None:
        """Replace a producer kafka-python declared dead (a fatal idempotence error: every send
        fails from then on), at most every `RENEW_AFTER_S`. Its records are answered failed."""
        now = time.monotonic()
        if now - self._renewed_at < RENEW_AFTER_S or not producer_is_dead(self._producer):
            return
        self._renewed_at = now
        log.warning("the Kafka producer is in a fatal state after a broker outage; replacing it "
                    "(records not acknowledged are reported failed)")
        try:
            replacement = self._new_producer()
        except KafkaError as exc:
            log.warning("no new Kafka producer yet (%s); the old one fails records until the next try", exc)
            return
        old, self._producer = self._producer, replacement
        self.renewals += 1
        try:
            old.close(timeout=1.0)  # its undelivered records are failed (and answered) by the close
        except KafkaError as exc:
            log.info("closing the dead producer: %s", exc)

    # -- sending ---------------------------------------------------------------------------------

    def topic(self, logical_topic: str) -> str:
        """The physical name of a logical topic (the run's prefix applied)."""
        return self._settings.topic(logical_topic)

    def publish(self, event: Event, *, tag: object = None) -> None:
        """Encode `event`, check it against the contract, send it to its family's topic."""
        family = event.family
        value = encode_event(event)
        outcome = decode_event(value, topic=family.topic)
        if isinstance(outcome, DecodeFailure):
            raise InvalidEventError(outcome)
        self._send(family.topic, event.company_id.encode(), value, tag)

    def publish_encoded(self, value: bytes, *, tag: object = None) -> Event:
        """Send contract JSON bytes untouched if they are a valid event (else `InvalidEventError`),
        keyed and routed by their content; returns the decoded event."""
        outcome = decode_event(value)
        if isinstance(outcome, DecodeFailure):
            raise InvalidEventError(outcome)
        self._send(outcome.family.topic, outcome.company_id.encode(), value, tag)
        return outcome

    def publish_raw(self, topic: str, key: bytes | None, value: bytes, *, tag: object = None) -> None:
        """Send bytes as they are, unchecked, to the logical `topic` (prefix applied)."""
        self._send(topic, key, value, tag)

    def _send(self, logical_topic: str, key: bytes | None, value: bytes, tag: object) -> None:
        topic = self._settings.topic(logical_topic)
        self._renew_if_dead()
        if self.pending >= self._max_pending:
            self._wait_for_room()
        try:
            future = self._producer.send(topic, key=key, value=value)
        except KafkaError as exc:
            raise PublishError(f"cannot send to {topic}: {explain_kafka_error(exc, self._settings)}") from exc
        self.sent += 1
        if self._on_delivery is None:
            future.add_callback(self._on_delivered)
            future.add_errback(partial(self._on_failed, topic, key))
        else:
            future.add_callback(partial(self._report_delivered, topic, key, tag))
            future.add_errback(partial(self._report_failed, topic, key, tag))

    def _wait_for_room(self) -> None:
        with self._settled:
            room = self._settled.wait_for(lambda: self.pending <= self._max_pending // 2,
                                          timeout=self._delivery_timeout_s)
        if not room:
            raise PublishError(f"{self.pending} records unacknowledged after {self._delivery_timeout_s:.0f}s")

    def _on_delivered(self, _metadata: object) -> None:
        with self._settled:
            self.delivered += 1
            self._settled.notify()

    def _on_failed(self, topic: str, key: bytes | None, error: BaseException) -> str:
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, AuthorizationError):  # a missing ACL: say which and what to do
            reason = explain_kafka_error(error, self._settings)
        with self._settled:
            self._failed += 1
            self._failed_total += 1
            self._settled.notify()
            if len(self._failures) < MAX_FAILURES_KEPT:
                self._failures.append(DeliveryFailure(topic, key, reason))
        return reason

    def _report_delivered(self, topic: str, key: bytes | None, tag: object, metadata: Any) -> None:
        self._on_delivered(metadata)
        assert self._on_delivery is not None
        self._on_delivery(Delivery(tag, topic, key, metadata.partition, metadata.offset))

    def _report_failed(self, topic: str, key: bytes | None, tag: object, error: BaseException) -> None:
        reason = self._on_failed(topic, key, error)
        assert self._on_delivery is not None
        self._on_delivery(Delivery(tag, topic, key, error=reason))

    # -- completion ------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records handed to the producer and neither acknowledged nor failed yet."""
        return self.sent - self.delivered - self._failed_total

    @property
    def failed(self) -> int:
        """Records the broker did not acknowledge so far (reset by a raising flush)."""
        return self._failed

    @property
    def failed_total(self) -> int:
        """Every record the broker did not acknowledge since the start (never reset)."""
        return self._failed_total

    def raise_if_failed(self) -> None:
        """Raise `DeliveryError` for the failures seen so far (and forget them), without waiting."""
        with self._settled:
            failed, failures = self._failed, self._failures
            self._failed, self._failures = 0, []
        if failed:
            raise DeliveryError(failed, failures)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged or failed; raise `DeliveryError` if
        any failed, `PublishError` if they are still pending after the timeout (default: the
        publisher's `timeout_s` plus the delivery timeout)."""
        wait = timeout_s if timeout_s is not None else 3 * self._timeout_s + 10
        deadline = time.monotonic() + wait
        while True:
            try:
                self._producer.flush(timeout=max(0.1, deadline - time.monotonic()))
                break
            except KafkaTimeoutError as exc:
                pending = self.pending
                raise PublishError(f"{pending} record(s) still unacknowledged after {wait:.0f}s") from exc
            except UnknownError as exc:
                # kafka-python 3.0.12 splits a batch the broker found too large and re-enqueues its
                # halves, but its flush then sees the old batch as "not done": wait for the halves
                if time.monotonic() >= deadline:
                    raise PublishError(f"{self.pending} record(s) still unacknowledged after {wait:.0f}s: "
                                       f"{exc}") from exc
        self.raise_if_failed()

    def close(self) -> None:
        """Flush (raising on undelivered records) and close the producer; records still without an
        answer when the flush gives up are aborted, and reported failed like the others."""
        try:
            self.flush()
        finally:
            self._close_producer()

    def _close_producer(self) -> None:
        try:
            self._producer.close(timeout=self._timeout_s)
            return
        except KafkaTimeoutError:
            pass
        # kafka-python's close flushes first and raises while records are still unanswered (their
        # partitions' leaders unreachable, or unable to commit): abort them -- each one's errback
        # reports it failed ("Producer is closed forcefully") -- then close what is left
        sender = self._producer._sender
        sender.force_close()
        sender.join(self._timeout_s)
        self._producer.close(timeout=0)

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except PublishError as delivery_problem:
            log.error("while handling %s: %s", exc_type.__name__, delivery_problem)
