"""Peer 1, bare aiokafka: consume, msgspec decode, produce one output per record, commit -- one process.

A fetched batch (`getmany`, up to 5,000 records) is decoded record by record (`msgspec.json`,
generic: no schema), each record's value is produced to `<prefix>bench.aiokafka.out` (acks=all),
the batch's delivery futures are awaited, then the offsets are committed. The clock runs from the
first fetched batch to the commit after the last expected record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import msgspec

from mic_pipeline.bench.peer import PeerArgs, write_result
from mic_pipeline.config import Settings
from mic_pipeline.infra.topics import TopicSpec, admin_client, ensure_topics
from mic_pipeline.kafka_clients import aiokafka_options

DEADLINE_S = 900.0


def run(args: PeerArgs) -> None:
    output = f"{args.prefix}bench.aiokafka.out"
    with admin_client(_settings(args)) as admin:
        ensure_topics(admin, [TopicSpec(output, args.partitions, {})])
    asyncio.run(_consume(args, output))


async def _consume(args: PeerArgs, output: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    settings = _settings(args)
    consumer = AIOKafkaConsumer(
        *args.inputs,
        bootstrap_servers=args.bootstrap,
        **aiokafka_options(
            settings,
            group_id=args.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=16 * 1024 * 1024,
        ),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, **aiokafka_options(settings, acks="all", linger_ms=5)
    )
    await consumer.start()
    await producer.start()
    try:
        handled, invalid, first, last = await _loop(consumer, producer, args.expect, output)
    finally:
        await consumer.stop()
        await producer.stop()
    write_result(args, handled, last - first, invalid=invalid, output_topic=output)


def _settings(args: PeerArgs) -> Settings:
    """This process's settings (security included) on the bench's broker."""
    return dataclasses.replace(Settings.from_env(), kafka_bootstrap=args.bootstrap)


async def _loop(consumer: Any, producer: Any, expect: int, output: str) -> tuple[int, int, float, float]:
    decoder = msgspec.json.Decoder()
    handled = invalid = 0
    first: float | None = None
    deadline = time.monotonic() + DEADLINE_S
    while handled < expect:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {handled} of {expect} records after {DEADLINE_S:.0f} s")
        batches = await consumer.getmany(timeout_ms=500, max_records=5000)
        if not batches:
            continue
        if first is None:
            first = time.perf_counter()
        futures = []
        for records in batches.values():
            for record in records:
                try:
                    decoder.decode(record.value)
                except (msgspec.DecodeError, RecursionError):  # the deep-nesting poison pill
                    invalid += 1
                futures.append(await producer.send(output, record.value, key=record.key))
                handled += 1
        await asyncio.gather(*futures)
        await consumer.commit()
    assert first is not None
    return handled, invalid, first, time.perf_counter()
