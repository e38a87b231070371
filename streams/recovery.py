"""Rebuilding partition stores from the state changelog (after a start, a crash or a rebalance).

`claim` writes a claim record to each partition (the new owner's epoch: `streams.store`);
`load_stores`, called after it, reads the given partitions of the compacted `<app>-state-changelog`
from the beginning to the end offsets it finds when it starts, with a group-less consumer, and
replays every record into a fresh `PartitionStore` (a value sets its key, a tombstone deletes it,
a record written after a newer owner's claim is skipped). The end offset
of each partition is returned with its store: a worker that owned a partition before a rebalance and
gets it back keeps its in-memory store only if the changelog still ends where its own last write
ended (`changelog_ends`) -- nobody else wrote it in between.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from streams.store import CLAIM_PREFIX, NO_EPOCH, OWNER_HEADER, PartitionStore, epoch_of

log = logging.getLogger(__name__)
FETCH_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Recovered:
    """A rebuilt store and the changelog offset it is current up to."""

    store: PartitionStore
    end_offset: int


def _consumer(bootstrap: str, options: Mapping[str, Any]) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=FETCH_BYTES,
        fetch_max_bytes=FETCH_BYTES,
        **options,
    )


async def claim(producer: Any, topic: str, partitions: Collection[int], worker: str) -> dict[int, int]:
    """Write a claim to each of `partitions` of the changelog `topic`; their offsets (the epochs).

    Each claim has a key of its own (`~claim:<uuid>`), so compaction never removes one: a load must
    see every claim to know which records came after a newer owner's."""
    import uuid

    value = json.dumps({"worker": worker, "at": time.time()}).encode()
    sent = {}
    for p in sorted(partitions):
        key = f"{CLAIM_PREFIX}{uuid.uuid4().hex}".encode()
        sent[p] = await producer.send(topic, key=key, value=value, partition=p,
                                      headers=[(OWNER_HEADER, str(NO_EPOCH).encode())])
    claimed = {p: (await future).offset for p, future in sent.items()}
    log.info("claimed changelog partitions %s at offsets %s", sorted(claimed), claimed)
    return claimed


async def changelog_ends(
    bootstrap: str, topic: str, partitions: Collection[int], options: Mapping[str, Any] | None = None
) -> dict[int, int]:
    """The current end offset of each of `partitions` of the changelog `topic`."""
    from aiokafka import TopicPartition

    consumer = _consumer(bootstrap, options or {})
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def load_stores(
    bootstrap: str, topic: str, partitions: Collection[int], options: Mapping[str, Any] | None = None
) -> dict[int, Recovered]:
    """Rebuild the stores of `partitions` from the changelog `topic` (see the module doc)."""
    from aiokafka import TopicPartition

    started = time.monotonic()
    consumer = _consumer(bootstrap, options or {})
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        stores = {tp.partition: PartitionStore(tp.partition) for tp in tps}
        remaining = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        records = 0
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=20_000)
            for tp, messages in batches.items():
                apply = stores[tp.partition].apply_changelog
                for message in messages:
                    if message.offset < ends[tp]:
                        apply(message.key, message.value, message.offset, epoch_of(message.headers))
                records += len(messages)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        log.info(
            "recovered partitions %s from %s: %d changelog records, %d keys, %.2f s",
            sorted(stores),
            topic,
            records,
            sum(len(s) for s in stores.values()),
            time.monotonic() - started,
        )
        for p, store in sorted(stores.items()):
            if store.fenced:
                log.warning(
                    "partition %d: %d changelog records fenced (written by an owner after a newer "
                    "owner's claim: a zombie's late checkpoint), not loaded", p, store.fenced
                )
        return {tp.partition: Recovered(stores[tp.partition], ends[tp]) for tp in tps}
    finally:
        await consumer.stop()
