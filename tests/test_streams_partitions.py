"""A partition's state is kept only by the worker that owns it, also across a rebalance that happens
while the state is still being recovered (no broker: the changelog reads are stand-ins).

Before: a load started for the partitions of one assignment installed all of them when it ended,
even those a rebalance had moved to another worker meanwhile -- this worker then re-checked their
parked records on its timer and wrote their changelog next to the real owner's writes; and a
partition revoked and assigned back while loading kept the store read before another owner wrote
it in between. Reachable in `test_kill_restart_and_second_worker...`: the second worker joins while
the restarted one is still recovering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.health import Health
from streams import partitions as partitions_module
from streams.partitions import Partitions
from streams.recovery import Recovered
from streams.replica import MemberReplica
from streams.settings import StreamSettings
from streams.store import PartitionStore


class Changelog:
    """The changelog partitions: their end offsets, their latest claims and one marker per write; a
    load waits for `gate`."""

    def __init__(self) -> None:
        self.ends = {0: 5, 1: 7, 2: 3}
        self.claims: dict[int, int] = {}
        self.gate = asyncio.Event()
        self.reading = asyncio.Event()
        self.loads: list[list[int]] = []

    async def claim(self, partitions: list[int]) -> dict[int, int]:
        for p in partitions:
            self.claims[p] = self.ends[p]
            self.ends[p] += 1
        return {p: self.claims[p] for p in partitions}

    async def load_stores(
        self, bootstrap: str, topic: str, partitions: Collection[int], options: Any = None
    ) -> dict[int, Recovered]:
        wanted = sorted(partitions)
        self.loads.append(wanted)
        read = {p: self.ends[p] for p in wanted}  # what the load read up to
        self.reading.set()
        await self.gate.wait()
        recovered = {}
        for p, end in read.items():
            store = PartitionStore(p, {"written": end})
            store.latest_claim = self.claims[p]  # the newest claim by the time the read ended
            recovered[p] = Recovered(store, end)
        return recovered

    async def changelog_ends(
        self, bootstrap: str, topic: str, partitions: Collection[int], options: Any = None
    ) -> dict[int, int]:
        return {p: self.ends[p] for p in partitions}


@pytest.fixture
def changelog(monkeypatch: pytest.MonkeyPatch) -> Changelog:
    fake = Changelog()
    monkeypatch.setattr(partitions_module, "load_stores", fake.load_stores)
    monkeypatch.setattr(partitions_module, "changelog_ends", fake.changelog_ends)
    return fake


def _partitions(changelog: Changelog) -> Partitions:
    settings = StreamSettings(pipeline=Settings(partitions=3), app_id="partitions-test")
    return Partitions(settings, MemberReplica(), Health("streams"), changelog.claim)


def test_a_partition_revoked_while_loading_is_not_kept(changelog: Changelog) -> None:
    async def scenario() -> None:
        partitions = _partitions(changelog)
        await partitions.assign({0, 1, 2})  # the restarted worker gets everything and starts loading
        await changelog.reading.wait()
        await partitions.assign({0})  # the second worker joins before the load ended
        changelog.gate.set()
        assert (await partitions.runtime(0)) is not None
        assert sorted(partitions.runtimes) == [0], "keeps partitions another worker owns"
        assert await partitions.runtime(1) is None and changelog.loads == [[0, 1, 2]]

    asyncio.run(scenario())


def test_a_partition_given_back_while_loading_is_reloaded_if_another_owner_wrote_it(
    changelog: Changelog,
) -> None:
    async def scenario() -> None:
        partitions = _partitions(changelog)
        await partitions.assign({0, 1, 2})
        await changelog.reading.wait()
        await partitions.assign({0})  # 1 and 2 move to the other worker...
        changelog.claims[1], changelog.ends[1] = 8, 9  # ...which claims partition 1 and checkpoints it
        await partitions.assign({0, 1, 2})  # and they come back before the first load ended
        changelog.gate.set()
        runtime = await partitions.runtime(1)  # not the store read before the other owner's writes
        assert runtime is not None and runtime.store["written"] == 10 and runtime.changelog_end == 10
        assert runtime.store.epoch == 9  # our second claim, after the other owner's
        assert changelog.loads == [[0, 1, 2], [1]]
        assert sorted(partitions.runtimes) == [0, 1, 2]
        assert partitions.runtimes[2].changelog_end == 4  # nobody wrote it: the first load is kept
        assert partitions.runtimes[2].store.epoch == 3

    asyncio.run(scenario())


def test_a_partition_claimed_by_another_worker_while_loading_is_not_ours_until_reassigned(
    changelog: Changelog,
) -> None:
    async def scenario() -> None:
        partitions = _partitions(changelog)
        await partitions.assign({0, 1})
        await changelog.reading.wait()
        changelog.claims[1], changelog.ends[1] = 9, 10  # another worker claims 1 after our claim at 7
        changelog.gate.set()
        assert (await partitions.runtime(0)) is not None
        assert await partitions.runtime(1) is None and sorted(partitions.runtimes) == [0]
        assert changelog.loads == [[0, 1]], "a lost claim must not be claimed back before a rebalance"
        await partitions.assign({0, 1})  # the group gives it to us (again)
        runtime = await partitions.runtime(1)
        assert runtime is not None and runtime.store.epoch == 10 and changelog.loads[-1] == [1]

    asyncio.run(scenario())
