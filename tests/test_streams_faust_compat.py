"""`streams.faust_compat` on the real broker: a seek to committed offsets rewinds never-committed
partitions; the version gate refuses untested versions."""

from __future__ import annotations

import asyncio

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.infra.topics import TopicSpec, admin_client, ensure_topics
from streams.faust_compat import UnsupportedVersion, check_versions, seek_to_committed_or_start


def test_untested_faust_or_aiokafka_versions_are_refused_with_a_clear_message() -> None:
    check_versions({"faust-streaming": "0.15.3", "aiokafka": "0.14.0"})
    check_versions()  # the installed ones are the tested ones
    with pytest.raises(UnsupportedVersion) as refused:
        check_versions({"faust-streaming": "0.16.0", "aiokafka": "0.14.0"})
    message = str(refused.value)
    assert "faust-streaming 0.16.0 (tested: 0.15.3)" in message
    assert "aiokafka" not in message.split("versions:")[1]


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
