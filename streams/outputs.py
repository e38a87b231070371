"""Produced messages, handed to an aiokafka producer in record batches, and their acknowledgements.

The stream worker writes enriched records, dead letters, member states and changelog records; each
goes to the partition of its topic that the worker names (the input record's partition: every key
of an input record stays on its partition number). `OutputWriter.append` adds a message to an open
record batch of its topic-partition (aiokafka's `BatchBuilder`, a few microseconds a message);
`submit` hands the open batches to the producer, and `wait` returns once every message handed over
so far is acknowledged by the broker (`acks=all`) -- raising `DeliveryError` if one was not, so that
no offset is committed past it. A message too large for a batch is sent on its own.

Nothing appended is ever forgotten before the producer has it, and no acknowledgement before it
arrived: faust cancels the task deciding a batch when it stops the consumer (`Fetcher.stop`, before
the worker's last checkpoint), and that task is mostly suspended in `submit` (aiokafka's `add_batch`
waits while an earlier batch of the partition is not drained). A cancelled `submit` leaves what it
did not hand over appended, a cancelled `wait` leaves the acknowledgements pending, and a failed
acknowledgement makes every later `wait` fail too -- so the last checkpoint after a cancellation
hands the rest over first, and the one after a failure (the app crashes, then stops) commits
nothing (`tests/test_streams_handover.py`).

Nothing here knows about records or state: `streams.checkpoint` decides what is written when.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BATCH_BYTES = 512 * 1024
"""Largest record batch the producer builds (its `max_batch_size`)."""
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Largest produce request: a dead letter carries up to 512 KiB of its original value."""


Headers = list[tuple[str, bytes]]
"""Message headers: a list (aiokafka's compiled batch builder takes nothing else)."""
_NO_HEADERS: Headers = []


class DeliveryError(RuntimeError):
    """A produced message was not acknowledged: offsets must not be committed past it."""


@dataclass
class _Open:
    builder: Any
    count: int = 0


@dataclass
class OutputWriter:
    """Record batches per topic-partition over `producer` (an `aiokafka.AIOKafkaProducer`)."""

    producer: Any
    counted: Callable[[str, int], None] = lambda topic, n: None
    """Called with (topic, messages) for every batch handed over (metrics)."""
    _open: dict[tuple[str, int], _Open] = field(default_factory=dict)
    _full: list[tuple[str, int, _Open]] = field(default_factory=list)
    _single: list[tuple[str, int, bytes | None, bytes | None, Headers]] = field(default_factory=list)
    _pending: list[asyncio.Future[Any]] = field(default_factory=list)
    _failed: str | None = None
    """Why an acknowledgement failed: every later `wait` raises `DeliveryError` with it."""
    appended: int = 0
    """Messages appended since the writer was made (all kinds)."""
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) -> the offset after the last acknowledged message this writer produced."""

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = _NO_HEADERS,
    ) -> None:
        """Add one message; it is handed to the producer by the next `submit`."""
        self.appended += 1
        where = (topic, partition)
        current = self._open.get(where)
        if current is None:
            current = self._open[where] = _Open(self.producer.create_batch())
        if current.builder.append(timestamp=None, key=key, value=value, headers=headers) is not None:
            current.count += 1
            return
        if current.count:  # full: hand it over at the next submit, start another one
            self._full.append((topic, partition, current))
            current = self._open[where] = _Open(self.producer.create_batch())
            if current.builder.append(timestamp=None, key=key, value=value, headers=headers) is not None:
                current.count += 1
                return
        self._single.append((topic, partition, key, value, headers))  # larger than a whole batch

    @property
    def unsubmitted(self) -> int:
        """Messages appended but not yet handed to the producer."""
        return (
            sum(o.count for o in self._open.values())
            + sum(o.count for _, _, o in self._full)
            + len(self._single)
        )

    async def submit(self) -> None:
        """Hand every appended message to the producer (their acknowledgements are awaited by `wait`).

        A batch leaves the writer only once the producer has taken it: if `submit` is cancelled or
        a send raises, the batches not handed over stay appended, in order, for the next `submit`.
        """
        for (topic, partition), current in self._open.items():
            if current.count:  # after the batches of the partition that filled up before it
                self._full.append((topic, partition, current))
        self._open = {}
        full, single = self._full, self._single
        while full:
            topic, partition, current = full[0]
            future = await self.producer.send_batch(current.builder, topic, partition=partition)
            del full[0]  # no await from here on: taken by the producer and tracked, or neither
            self._track(future, topic, partition, current.count)
        while single:
            topic, partition, key, value, headers = single[0]
            future = await self.producer.send(topic, value=value, key=key, partition=partition,
                                              headers=headers or None)
            del single[0]
            self._track(future, topic, partition, 1)

    def _track(self, future: asyncio.Future[Any], topic: str, partition: int, count: int) -> None:
        self._pending.append(future)
        self.counted(topic, count)

        def acknowledged(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None:
                end = done.result().offset + count
                where = (topic, partition)
                if end > self.ends.get(where, -1):
                    self.ends[where] = end

        future.add_done_callback(acknowledged)

    async def wait(self) -> None:
        """Wait until everything submitted so far is acknowledged; `DeliveryError` if any failed
        (now or at any earlier `wait`: offsets must never be committed past a lost message)."""
        pending = list(self._pending)
        if pending:
            await asyncio.wait(pending)  # unlike gather, a cancelled wait cancels none of them
            settled = set(pending)
            self._pending = [future for future in self._pending if future not in settled]
            failures: list[BaseException] = []
            for future in pending:
                cancelled = future.cancelled()
                error = RuntimeError("acknowledgement cancelled") if cancelled else future.exception()
                if error is not None:
                    failures.append(error)
            if failures and self._failed is None:
                self._failed = f"{len(failures)} of {len(pending)} produced batches were not acknowledged"
                self._failed += f": {failures[0]!r}"
                raise DeliveryError(self._failed) from failures[0]
        if self._failed is not None:
            raise DeliveryError(self._failed)

    async def flush(self) -> None:
        """`submit`, then `wait`."""
        await self.submit()
        await self.wait()
