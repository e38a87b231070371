"""`streams.seeking` on the real broker: a seek to committed offsets rewinds never-committed partitions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.infra.topics import TopicSpec, admin_client, ensure_topics
from streams import seeking
from streams.seeking import ack_may_commit, first_unprocessed, seek_to_committed_or_start


def test_a_hole_at_the_committed_offset_is_found() -> None:
    assert first_unprocessed([428, 429], 427) == 427  # faust would commit 430 past 427
    assert first_unprocessed([427, 428], 427) is None
    assert first_unprocessed([], 427) is None
    assert first_unprocessed([5], None) is None  # never committed: the seek fix covers it


def test_only_acks_of_the_current_generation_outside_a_rebalance_may_commit() -> None:
    assert ack_may_commit(3, 3, flow_active=True)
    assert not ack_may_commit(2, 3, flow_active=True)  # fetched before the last rebalance
    assert not ack_may_commit(3, 3, flow_active=False)  # a rebalance is under way
    assert not ack_may_commit(None, 3, flow_active=True)


def test_the_consumer_records_no_ack_during_a_rebalance_or_from_an_older_generation() -> None:
    """The patched `Consumer.ack` on a real (unconnected) faust consumer: refused acknowledgements
    release the message but leave no offset that a commit could pass."""
    import faust
    from faust.types import TP
    from faust.types.tuples import Message

    async def scenario() -> None:
        seeking.install(["ack.processed"])
        app = faust.App("ack-guard-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
        consumer: Any = app.consumer
        app.topics._acking_topics.add("ack.processed")  # type: ignore[attr-defined]  # as a subscribed topic
        app.consumer_generation_id = 3
        tp = TP("ack.processed", 0)

        def ack(offset: int, generation: int) -> bool:
            message = Message(tp.topic, 0, offset, 0.0, 0, None, b"k", b"v", None, generation_id=generation)
            message.tracked = True
            consumer._unacked_messages.add(message)
            acked: bool = consumer.ack(message)
            assert message.acked and message not in consumer._unacked_messages
            return acked

        app.flow_control.resume()
        assert ack(5, generation=3)
        assert not ack(6, generation=2)
        app.flow_control.suspend()
        assert not ack(7, generation=3)
        assert consumer._acked[tp] == [5]

    asyncio.run(scenario())


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
