"""What flows between the runner and a sink: records with their coordinates, batches, rejections.

Pure data, no Kafka imports: sinks and their tests use these without a broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.reasons import DeadLetterReason


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One consumed Kafka record with its coordinates (offsets travel with the records)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Batch:
    """Consecutive records of one partition, in offset order.

    `resumed` is true for the first batch of a partition after it was assigned to this consumer:
    its first offset is the group's committed position, so anything a sink wrote for offsets at or
    after it belongs to an attempt that was never committed.
    """

    topic: str
    partition: int
    records: tuple[SourceRecord, ...]
    resumed: bool = False

    @property
    def first_offset(self) -> int:
        return self.records[0].offset

    @property
    def last_offset(self) -> int:
        return self.records[-1].offset


@dataclass(frozen=True)
class Rejected:
    """A record that can never be written, with the dead-letter reason and what we could read."""

    record: SourceRecord
    reason: DeadLetterReason
    detail: str
    event_id: str | None = None
    event_type: str | None = None


class Sink(Protocol):
    """A destination. `write` returns only once the batch is durable (or raises)."""

    name: str
    """`sql` or `parquet`: the `sink` label of the metrics."""

    def prepare(self) -> None:
        """Get ready to write (schema, directories); idempotent. Raises `TransientSinkError` while
        the destination is unavailable (the runner retries it with backoff)."""
        ...

    def write(self, batch: Batch) -> list[Rejected]:
        """Land `batch` idempotently; return the records that can never be written.

        Raises `TransientSinkError` when the destination is unavailable (nothing is committed).
        """
        ...

    def write_group(self, batches: Sequence[Batch]) -> list[list[Rejected]]:
        """Land batches of several partitions together (one gate run per family amortizes its
        cost); the records that can never be written, per batch. Same contract as `write`."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
