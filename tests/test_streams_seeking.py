"""`streams.seeking` on the real broker: a seek to committed offsets rewinds never-committed partitions."""

from __future__ import annotations

import asyncio

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.infra.topics import TopicSpec, admin_client, ensure_topics
from streams.seeking import first_unprocessed, seek_to_committed_or_start


def test_a_hole_at_the_committed_offset_is_found() -> None:
    assert first_unprocessed([428, 429], 427) == 427  # faust would commit 430 past 427
    assert first_unprocessed([427, 428], 427) is None
    assert first_unprocessed([], 427) is None
    assert first_unprocessed([5], None) is None  # never committed: the seek fix covers it


@pytest.mark.kafka
def test_seek_rewinds_uncommitted_partitions_of_its_topics_only(settings: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    processed, other = settings.topic("seek.processed"), settings.topic("seek.other")
    with admin_client(settings.kafka_bootstrap) as admin:
        ensure_topics(admin, [TopicSpec(processed, 2, {}), TopicSpec(other, 1, {})])
    never, committed_at_3, untouched = (
        TopicPartition(processed, 0),
        TopicPartition(processed, 1),
        TopicPartition(other, 0),
    )

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for tp in (never, committed_at_3, untouched):
                for i in range(5):
                    await producer.send_and_wait(tp.topic, b"%d" % i, partition=tp.partition)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.topic("seek-group"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign([never, committed_at_3, untouched])
            await consumer.commit({committed_at_3: 3})
            read = 0
            while read < 5 + 2 + 5:  # everything fetched, nothing processed: as when faust drops a queue
                batches = await consumer.getmany(timeout_ms=2000)
                read += sum(len(records) for records in batches.values())
            assert [await consumer.position(tp) for tp in (never, committed_at_3, untouched)] == [5, 5, 5]

            committed = await seek_to_committed_or_start(consumer, {processed})

            assert committed == {never: None, committed_at_3: 3, untouched: None}
            assert await consumer.position(never) == 0  # read again from the start
            assert await consumer.position(committed_at_3) == 3
            assert await consumer.position(untouched) == 5  # not one of the topics: left alone
        finally:
            await consumer.stop()

    asyncio.run(scenario())
