"""The stream worker's checkpoint: outputs, then state, then offsets -- each only after the last.

Records are decided in batches; their outputs are appended to `streams.outputs.OutputWriter` and
their state changes stay in the partitions' `streams.store.PartitionStore`s. `Checkpoint.commit`
then makes them durable in this order, and only in this order (arroyo's "commit is the explicit last
step", Quix Streams' `Checkpoint.commit`):

1. every output appended so far is handed to the producer and acknowledged by the broker;
2. every state key changed since the last checkpoint is written to its changelog partition (one
   record per key, the last value; a tombstone for a deleted key; the owner's epoch in a header,
   `streams.store`) and acknowledged;
3. decisions held until their state is durable (`streams.outbox`: those that depended on a parked
   record's waiting time) are handed to the outputs by the function the worker passes in
   (`on_durable`) and acknowledged; then their deletion from the state is written and acknowledged;
4. only then are the input offsets of the decided records committed, through the commit function
   the worker passes in.

Why outputs before state: a record re-decided from the state alone (a parked record, re-checked on
the worker's timer, has no input offset to replay it) must never be released in the durable state
while its outputs could still be lost. Why state before offsets: after a crash the records since
the last commit are decided again; state ahead of the committed offsets makes that a replay
(`streams.processor`: decisions repeated, nothing counted twice), state behind them would lose the
decisions. A delivery failure raises `DeliveryError` before anything is committed; the worker must
then stop (the stores believe keys are written that are not), and its successor rebuilds the state
from the changelog and re-reads from the last commit. The writer remembers the failure, so the last
checkpoint of that stop raises it again instead of committing past the lost messages; and a
checkpoint or batch cancelled mid-send (faust cancels the deciding task when it stops the consumer,
before the worker's last checkpoint) leaves every message not handed over in the writer, so the
last checkpoint sends it before the state that depends on it (`streams.outputs`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from streams.outputs import OutputWriter
from streams.store import PartitionStore

CommitFunction = Callable[[Mapping[Hashable, int]], Awaitable[bool]]
"""Commits `{partition: next offset}` for the consumer group; False when the group rebalanced."""


@dataclass
class CheckpointResult:
    """What one checkpoint made durable."""

    outputs: int
    changelog_records: int
    offsets: dict[Hashable, int]
    committed: bool


@dataclass
class Checkpoint:
    """Decided input offsets per partition and the commit sequence that makes them durable."""

    outputs: OutputWriter
    changelog_topic: str
    commit_offsets: CommitFunction
    interval_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _decided: dict[Hashable, int] = field(default_factory=dict)
    _committed: dict[Hashable, int] = field(default_factory=dict)
    last_commit: float = field(default=0.0)
    """`clock()` of the last checkpoint that committed (or had nothing to commit)."""

    def __post_init__(self) -> None:
        self.last_commit = self.clock()

    def decided(self, tp: Hashable, next_offset: int) -> None:
        """Every record of `tp` below `next_offset` is decided and its outputs appended."""
        self._decided[tp] = next_offset

    def forget(self, tps: Iterable[Hashable]) -> None:
        """Partitions this worker no longer owns: their decided offsets are not committed."""
        for tp in tps:
            self._decided.pop(tp, None)
            self._committed.pop(tp, None)

    def committed(self, tp: Hashable) -> int | None:
        return self._committed.get(tp)

    @property
    def uncommitted(self) -> dict[Hashable, int]:
        """Decided offsets not committed yet."""
        return {tp: o for tp, o in self._decided.items() if self._committed.get(tp) != o}

    def due(self) -> bool:
        return self.clock() - self.last_commit >= self.interval_s

    async def commit(
        self,
        stores: Iterable[PartitionStore],
        on_durable: Callable[[list[PartitionStore]], int] | None = None,
    ) -> CheckpointResult:
        """Steps 1-4 of the module doc; raises `DeliveryError` (nothing committed) on a failed send.

        `on_durable(stores)` appends the outputs of the decisions held in those stores (the ones
        just written), deletes them from the stores and returns how many it took."""
        stores = list(stores)
        offsets = self.uncommitted
        outputs = self.outputs.unsubmitted
        await self.outputs.flush()
        changelog = await self._write_state(stores)
        if on_durable is not None:
            held = self.outputs.unsubmitted
            if on_durable(stores):
                outputs += self.outputs.unsubmitted - held
                await self.outputs.flush()
                changelog += await self._write_state(stores)
        committed = await self.commit_offsets(offsets) if offsets else True
        if committed:
            self._committed.update(offsets)
            self.last_commit = self.clock()
        return CheckpointResult(outputs, changelog, offsets, committed)

    async def _write_state(self, stores: list[PartitionStore]) -> int:
        """Write every store's changes to its changelog partition and wait for them (step 2)."""
        changelog = 0
        for store in stores:
            headers = store.headers
            for key, value in store.take_changes():
                self.outputs.append(self.changelog_topic, store.partition, key, value, headers)
                changelog += 1
        await self.outputs.flush()
        return changelog
