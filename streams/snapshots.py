"""Live aggregates of the whole pipeline, whichever worker is asked.

Each worker snapshots the aggregates of the partitions it owns (every `snapshot_s`, only the
partitions that changed) to the compacted `<app>-partials` topic, with its epoch on the partition;
every worker follows that topic (`streams.replica.PartialsReplica`: a zombie's late snapshot is not
taken, and makes the owner publish its own again), and the view merges its own partitions with the
others' snapshots. The owner of partition 0 also writes the document -- re-rendered only when a partition,
a member or a replicated partial changed -- one record per section (`members`, `orders`, `patents`,
`factoring`, `quality`), to the compacted `mic.aggregates`. Snapshots are not part of the
checkpoint: they are derived data, re-published from the recovered state after any restart.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from aiokafka.errors import ProducerClosed

from streams.aggregates import render
from streams.worker import StreamWorker

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder(decimal_format="string").encode
MAX_SHARE = 0.1
"""Snapshots are spaced so that taking them costs at most this share of the worker's time."""


class Snapshots:
    """Publishes partials and the aggregates document for one worker."""

    def __init__(self, worker: StreamWorker, aggregates_topic: str) -> None:
        self.worker = worker
        self.aggregates_topic = aggregates_topic
        self._published: dict[int, tuple[int, int]] = {}
        """Partition -> (id of its processor, version) of the last partial sent."""
        self._document_inputs: Any = None
        self._last_document: dict[str, Any] = {}
        self._next_at = 0.0
        """Monotonic time before which no snapshot is taken (`MAX_SHARE` of the worker's time)."""

    def current_partials(self) -> list[Any]:
        owned = self.worker.owned()
        local = [rt.processor.tallies.partial(p) for p, rt in owned.items()]
        others = [entries for p, entries in self.worker.partials.partials.items() if p not in owned]
        return [*local, *others]

    def document(self) -> dict[str, Any]:
        return render(self.current_partials(), members=self.worker.members.members_section())

    async def publish(self) -> None:
        """Send the partials of owned partitions that changed, and the document when anything did.

        Cost: the aggregate entries of the changed partitions (running sums kept by the processor),
        and one merge of all partials when the document's inputs changed. Nothing once the worker
        stops: a timer tick racing the graceful stop skips its snapshot (derived data, re-published
        from the recovered state by whoever owns the partitions next) instead of failing the stop.
        """
        worker = self.worker
        producer = worker.producer
        started = time.monotonic()
        if producer is None or worker.stopped.is_set() or started < self._next_at:
            return
        try:
            await self._publish(worker, producer)
        except ProducerClosed:
            if not worker.stopped.is_set():
                raise
            log.info("worker stopping: snapshot skipped (its owners re-publish it after the handover)")
        finally:  # a snapshot takes at most MAX_SHARE of the time (large documents on a backlog)
            self._next_at = started + (time.monotonic() - started) / MAX_SHARE

    async def _publish(self, worker: StreamWorker, producer: Any) -> None:
        owned = worker.owned()
        partials_topic = worker.settings.partials_topic
        written = worker.partials.last_written
        for p, runtime in sorted(owned.items()):
            marker = (id(runtime.processor), runtime.processor.tallies.version(p))
            epoch = runtime.store.epoch
            overwritten = self._published.get(p) == marker and written.get(p, epoch) < epoch
            if self._published.get(p) != marker or overwritten:
                if overwritten:
                    log.info("partition %d: an older owner's snapshot came after ours; publishing again", p)
                snapshot = {"epoch": epoch, "entries": runtime.processor.tallies.partial(p)}
                await producer.send(partials_topic, key=str(p).encode(), value=_encode(snapshot), partition=p)
                self._published[p] = marker
        inputs = (
            frozenset(owned),
            tuple(self._published.get(p) for p in sorted(owned)),
            worker.members.version,
            worker.partials.version,
        )
        if 0 in owned and inputs != self._document_inputs:
            self._document_inputs = inputs
            for section, data in self.document().items():
                if self._last_document.get(section) != data:
                    value = {"section": section, "as_of": time.time(), "data": data}
                    await producer.send(self.aggregates_topic, key=section.encode(), value=_encode(value))
                    self._last_document[section] = data
