"""The partition numbers a worker is assigned: their state, a fresh processor each, and recovery.

`Partitions` keeps one `PartitionRuntime` per assigned partition number: the partition's store
(`streams.store`, rebuilt from the changelog by `streams.recovery`) and a new `EventProcessor` over
it for every assignment ("a fresh strategy per partition assignment"). A partition the worker gets
back after a rebalance keeps its store when the changelog still ends where this worker's own last
write ended -- nobody else wrote it in between; otherwise it is reloaded.

Every load starts with a claim of the partition's changelog (`streams.recovery.claim`, through the
claim function the worker passes in): the load then skips what an older owner wrote after the
claim, and the store stamps the claim's offset on everything this worker writes (`streams.store`).
A load that finds a newer claim than its own at its end -- another worker took the partition
meanwhile -- keeps nothing of it until the next assignment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from mic_pipeline.health import Health
from mic_pipeline.kafka_clients import aiokafka_options
from streams.processor import EventProcessor
from streams.records import readable_identity
from streams.recovery import changelog_ends, load_stores
from streams.replica import MemberReplica
from streams.settings import StreamSettings
from streams.store import PartitionStore

log = logging.getLogger(__name__)
ClaimFunction = Callable[[list[int]], Awaitable[dict[int, int]]]
"""Claims the changelog partitions given; the offset of each claim (`streams.recovery.claim`)."""
MAX_WAIT_STEP_S = 2.0
"""Most one re-check tick adds to the waiting time of parked records (or 2 x `recheck_s` if more)."""


@dataclass
class PartitionRuntime:
    """What the worker keeps for one assigned partition number."""

    store: PartitionStore
    processor: EventProcessor
    changelog_end: int
    """The changelog partition's end offset this store is current up to."""


class Partitions:
    """The runtimes of the assigned partitions, loaded from the changelog when needed."""

    def __init__(
        self, settings: StreamSettings, members: MemberReplica, health: Health, claim: ClaimFunction
    ) -> None:
        self.settings = settings
        self.members = members
        self.health = health
        self.claim = claim
        self._lost: set[int] = set()
        """Partitions a newer claim than ours took while we loaded them: not ours until reassigned."""
        self._claiming: set[asyncio.Future[dict[int, int]]] = set()
        """Claims under way (`claims_settled`)."""
        self.runtimes: dict[int, PartitionRuntime] = {}
        self._loading: dict[int, asyncio.Future[None]] = {}
        self._assigned: set[int] | None = None
        """The partitions of the last `assign` (None before the first: every load is kept)."""
        self._assignments = 0
        """How many times `assign` ran: a load that saw one pass may have missed another owner's writes."""

    def __iter__(self) -> Iterator[PartitionRuntime]:
        return iter(list(self.runtimes.values()))

    def items(self) -> list[tuple[int, PartitionRuntime]]:
        return list(self.runtimes.items())

    async def assign(self, partitions: set[int]) -> None:
        """The worker now owns `partitions`: drop the others, keep the current stores, load the rest.

        A load still under way is not restarted; when it ends it keeps only the partitions assigned
        then, and reloads those whose changelog moved meanwhile (another owner wrote it between two
        rebalances) -- a worker must never decide, re-check or checkpoint a partition it does not own.
        """
        self._assigned = set(partitions)
        self._assignments += 1
        self._lost.clear()
        for p in [p for p in self.runtimes if p not in partitions]:
            del self.runtimes[p]
        if self.runtimes:
            bootstrap, topic = self.settings.pipeline.kafka_bootstrap, self.settings.changelog_topic
            options = aiokafka_options(self.settings.pipeline)
            ends = await changelog_ends(bootstrap, topic, list(self.runtimes), options)
            for p, runtime in list(self.runtimes.items()):
                if ends.get(p) != runtime.changelog_end:
                    log.info("partition %d: changelog moved on (%s, ours %s); reloading", p, ends.get(p),
                             runtime.changelog_end)
                    del self.runtimes[p]
                else:
                    self.runtimes[p] = self._runtime_for(runtime.store, runtime.changelog_end)
        missing = sorted(p for p in partitions if p not in self.runtimes and p not in self._loading)
        if missing:
            self._start_loading(missing)

    def written(self, ends: dict[tuple[str, int], int]) -> None:
        """The changelog end offsets after this worker's last acknowledged writes."""
        for p, runtime in self.runtimes.items():
            runtime.changelog_end = ends.get((self.settings.changelog_topic, p), runtime.changelog_end)

    def _start_loading(self, partitions: list[int]) -> None:
        self.health.problem("recovery", f"recovering the state of partitions {partitions}")
        task = asyncio.ensure_future(self._load(partitions, self._assignments))
        for p in partitions:
            self._loading[p] = task

    async def _load(self, partitions: list[int], started: int) -> None:
        """Claim and load `partitions` (`started`: `_assignments` when the load was asked for)."""
        bootstrap, topic = self.settings.pipeline.kafka_bootstrap, self.settings.changelog_topic
        options = aiokafka_options(self.settings.pipeline)
        moved: list[int] = []
        try:
            claimed = [p for p in partitions if self._assigned is None or p in self._assigned]
            epochs = await self._claim(claimed) if claimed else {}
            recovered = await load_stores(bootstrap, topic, claimed, options) if claimed else {}
            if self._assigned is not None:
                recovered = {p: found for p, found in recovered.items() if p in self._assigned}
            for p, found in recovered.items():
                found.store.epoch = epochs[p]
            overtaken = sorted(p for p, found in recovered.items() if found.store.latest_claim != epochs[p])
            if recovered and self._assignments != started:  # rebalanced while loading
                ends = await changelog_ends(bootstrap, topic, list(recovered), options)
                moved = sorted(
                    p for p, found in recovered.items() if p in overtaken or ends.get(p) != found.end_offset
                )
            else:
                for p in overtaken:  # nobody should have: split ownership, keep out of it
                    log.warning("partition %d: claimed by another worker at offset %d after our claim at "
                                "%d; not ours until the next assignment", p, recovered[p].store.latest_claim,
                                epochs[p])
                    self._lost.add(p)
            for p, found in recovered.items():
                if p not in moved and p not in self._lost and (self._assigned is None or p in self._assigned):
                    self.runtimes[p] = self._runtime_for(found.store, found.end_offset)
        finally:
            for p in partitions:
                self._loading.pop(p, None)
            if not self._loading:
                self.health.clear("recovery")
        if moved:
            log.info("partitions %s: changelog moved on while they were loading; reloading", moved)
            self._start_loading(moved)

    async def _claim(self, partitions: list[int]) -> dict[int, int]:
        """`claim`, tracked until it is acknowledged (`claims_settled`)."""
        claiming = asyncio.ensure_future(self.claim(partitions))
        self._claiming.add(claiming)
        try:
            return await asyncio.shield(claiming)
        finally:
            if claiming.done():
                self._claiming.discard(claiming)

    async def claims_settled(self) -> None:
        """Wait for every claim under way. A rebalance waits for them before this worker rejoins the
        group: a claim landing after the next owner's would fence the next owner's writes."""
        pending = [claiming for claiming in self._claiming if not claiming.done()]
        if pending:
            await asyncio.wait(pending)
        self._claiming = {claiming for claiming in self._claiming if not claiming.done()}

    def _runtime_for(self, store: PartitionStore, changelog_end: int) -> PartitionRuntime:
        settings = self.settings
        processor = EventProcessor(
            store,
            store,
            self.members,
            member_wait_s=settings.member_wait_s,
            dedupe_days=settings.dedupe_days,
            max_wait_step_s=max(MAX_WAIT_STEP_S, 2 * settings.recheck_s),
        )
        return PartitionRuntime(store, processor, changelog_end)

    async def runtime(self, partition: int) -> PartitionRuntime | None:
        """The partition's runtime, waiting for its recovery (and a reload if the changelog moved
        while it loaded); None if it is not ours (any more)."""
        runtime = self.runtimes.get(partition)
        started = False
        while runtime is None:
            if partition in self._lost or (self._assigned is not None and partition not in self._assigned):
                return None
            loading = self._loading.get(partition)
            if loading is None:
                if started:
                    return None
                self._start_loading([partition])
                started = True
                loading = self._loading[partition]
            await asyncio.shield(loading)
            runtime = self.runtimes.get(partition)
        return runtime

    def trace(self, event_id: str) -> list[dict[str, Any]]:
        """What this worker knows of `event_id`: its decision (marker) and the origins of dropped
        copies, or the parked record waiting for a member -- one dict lookup per owned partition,
        plus the partition's parked records (few; rule 1's waiting room)."""
        found: list[dict[str, Any]] = []
        for p, runtime in sorted(self.runtimes.items()):
            marker = runtime.store.get(f"e:{event_id}")
            if marker is not None:
                found.append(
                    {
                        "partition": p,
                        "decision": marker[3],
                        "origin": marker[1],
                        "decided_at": marker[2] or marker[1],
                        "event_day": date.fromordinal(marker[0]).isoformat(),
                        "duplicates": list(marker[4]) if len(marker) > 4 else [],
                        "held": runtime.processor.outbox.holds(marker[1]),
                    }
                )
            for parked in runtime.processor.waiting(p):
                if readable_identity(parked.record.value)[0] == event_id:
                    wait_s = self.settings.member_wait_s
                    found.append(
                        {
                            "partition": p,
                            "decision": "parked",
                            "origin": parked.record.origin,
                            "waiting_for": list(parked.waiting_for or ()),
                            "waited_s": round(parked.waited_s, 3),
                            "expires_in_s": round(max(0.0, wait_s - parked.waited_s), 3),
                        }
                    )
        return found

