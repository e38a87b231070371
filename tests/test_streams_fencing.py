"""Owner fencing of the state changelog: a zombie's late checkpoint is not loaded.

A worker frozen past its session timeout (SIGSTOP, a long GC or VM pause) is replaced; when it
resumes it may run one more checkpoint before it learns of the rebalance. Before the fence, its
changelog records landed after its successor's and a later load of the partition took them -- the
older owner's values for the keys both wrote, and keys only the zombie wrote. Now every load starts
with a claim, every record carries its writer's claim offset (`mic-owner`), and a load skips records
older than the latest claim before them (`streams.store`, `streams.recovery`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from mic_pipeline.config import Settings
from streams.checkpoint import Checkpoint
from streams.outputs import OutputWriter
from streams.store import CLAIM_PREFIX, NO_EPOCH, OWNER_HEADER, PartitionStore, epoch_of


def _epoch(value: int) -> list[tuple[str, bytes]]:
    return [(OWNER_HEADER, str(value).encode())]


def test_a_load_skips_what_an_older_owner_wrote_after_a_newer_claim() -> None:
    log: list[tuple[bytes, bytes | None, int]] = [
        (b"e:legacy", b"[0]", NO_EPOCH),  # written before claims existed: kept
        (CLAIM_PREFIX.encode() + b"a", b"{}", NO_EPOCH),  # offset 1: owner A's claim
        (b"m:1", b'"A1"', 1),
        (b"m:2", b'"A2"', 1),
        (CLAIM_PREFIX.encode() + b"b", b"{}", NO_EPOCH),  # offset 4: B takes over (A frozen)
        (b"m:1", b'"B1"', 4),
        (b"m:1", b'"zombie"', 1),  # A resumes: its late checkpoint
        (b"m:3", b'"zombie"', 1),
        (b"m:2", None, 1),
        (b"m:4", b'"B4"', 4),
    ]
    store = PartitionStore(0)
    for offset, (key, value, epoch) in enumerate(log):
        store.apply_changelog(key, value, offset, epoch)
    assert dict(store) == {"e:legacy": [0], "m:1": "B1", "m:2": "A2", "m:4": "B4"}
    assert store.fenced == 3 and store.latest_claim == 4
    unfenced = PartitionStore(0)  # what a load took before: the zombie's values and keys
    for key, value, _ in log:
        if not key.startswith(CLAIM_PREFIX.encode()):
            unfenced.apply_changelog(key, value)
    assert unfenced["m:1"] == "zombie" and "m:3" in unfenced and "m:2" not in unfenced
    assert epoch_of(_epoch(17)) == 17 and epoch_of(None) == NO_EPOCH
    assert epoch_of([(OWNER_HEADER, b"x")]) == NO_EPOCH and epoch_of([("other", b"3")]) == NO_EPOCH


def test_every_changelog_record_of_a_checkpoint_carries_its_owners_epoch() -> None:
    store = PartitionStore(2)
    store.epoch = 41
    store["m:1"] = "x"
    appended: list[tuple[str, int, bytes | None, bytes | None, Any]] = []

    class Writer:
        unsubmitted = 0

        def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                   headers: Any = ()) -> None:
            appended.append((topic, partition, key, value, headers))

        async def flush(self) -> None:
            return None

    async def commit(offsets: Mapping[Any, int]) -> bool:
        return True

    checkpoint = Checkpoint(Writer(), "changelog", commit)  # type: ignore[arg-type]
    asyncio.run(checkpoint.commit([store]))
    assert appended == [("changelog", 2, b"m:1", b'"x"', _epoch(41))]


@pytest.mark.kafka
def test_on_the_broker_a_zombies_late_checkpoint_is_fenced_from_every_later_load(settings: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from mic_pipeline.infra.topics import TopicSpec, admin_client, ensure_topics
    from streams.recovery import claim, load_stores

    topic = settings.topic("fencing-changelog")
    with admin_client(settings.kafka_bootstrap) as admin:
        ensure_topics(admin, [TopicSpec(topic, 1, {"cleanup.policy": "compact"})])
    bootstrap = settings.kafka_bootstrap

    async def owner(producer: Any, name: str) -> tuple[PartitionStore, Checkpoint]:
        """A worker taking partition 0: claim, load, and its checkpoint over a real writer."""
        epochs = await claim(producer, topic, [0], name)
        store = (await load_stores(bootstrap, topic, [0]))[0].store
        store.epoch = epochs[0]
        assert store.latest_claim == epochs[0], f"{name}: another claim came after its own"

        async def commit(offsets: Mapping[Any, int]) -> bool:
            return True

        return store, Checkpoint(OutputWriter(producer), topic, commit)

    async def scenario() -> tuple[dict[str, Any], int, list[Any]]:
        producers = [AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") for _ in range(2)]
        for producer in producers:
            await producer.start()
        try:
            a_store, a_checkpoint = await owner(producers[0], "A")
            a_store["m:1"], a_store["m:2"] = "A1", "A2"
            await a_checkpoint.commit([a_store])
            b_store, b_checkpoint = await owner(producers[1], "B")  # A frozen: B takes over
            assert dict(b_store) == {"m:1": "A1", "m:2": "A2"}
            a_store["m:1"], a_store["m:3"] = "zombie", "zombie"  # A resumes: one more checkpoint
            del a_store["m:2"]
            await a_checkpoint.commit([a_store])
            b_store["m:4"] = "B4"
            await b_checkpoint.commit([b_store])
            loaded = (await load_stores(bootstrap, topic, [0]))[0].store
        finally:
            for producer in producers:
                await producer.stop()
        raw = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await raw.start()
        try:
            tp = TopicPartition(topic, 0)
            raw.assign([tp])
            end = (await raw.end_offsets([tp]))[tp]
            records: list[Any] = []
            while await raw.position(tp) < end:
                records.extend((await raw.getmany(tp, timeout_ms=1000)).get(tp, []))
        finally:
            await raw.stop()
        return dict(loaded), loaded.fenced, records

    loaded, fenced, records = asyncio.run(scenario())
    assert loaded == {"m:1": "A1", "m:2": "A2", "m:4": "B4"}
    assert fenced == 3
    claims = [r.offset for r in records if r.key.startswith(CLAIM_PREFIX.encode())]
    zombie = [r for r in records if r.offset > claims[1] and epoch_of(r.headers) < claims[1]]
    assert len(claims) == 2 and sorted(r.key for r in zombie) == [b"m:1", b"m:2", b"m:3"]
