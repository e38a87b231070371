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


def test_a_seek_interrupted_by_a_rebalance_is_abandoned_not_a_crash() -> None:
    """aiokafka raises IllegalStateError when a partition is revoked between its awaits; the worker
    crashed on it once in ~6 two-worker starts. The seek is abandoned (faust seeks again later)."""
    from aiokafka.errors import IllegalStateError
    from aiokafka.structs import TopicPartition

    class Revoking:
        def __init__(self, fail_in: str) -> None:
            self.fail_in = fail_in
            self.sought: list[tuple[TopicPartition, int]] = []

        async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
            if self.fail_in == "committed":
                raise IllegalStateError("No current assignment for partition TopicPartition('t', 0)")
            return {TopicPartition("t", 0): None, TopicPartition("t", 1): 7}

        async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            return dict.fromkeys(tps, 0)

        def seek(self, tp: TopicPartition, offset: int) -> None:
            if self.fail_in == "seek":
                raise IllegalStateError(f"No current assignment for partition {tp}")
            self.sought.append((tp, offset))

    for where in ("committed", "seek"):
        positions: dict[TopicPartition, int] = {}
        assert asyncio.run(seek_to_committed_or_start(Revoking(where), {"t"}, positions)) == {}
        assert positions == {}
    fine = Revoking("nowhere")
    positions = {}
    assert asyncio.run(seek_to_committed_or_start(fine, {"t"}, positions)) == {
        TopicPartition("t", 0): None,
        TopicPartition("t", 1): 7,
    }
    assert fine.sought == [(TopicPartition("t", 0), 0)]
    assert positions == {TopicPartition("t", 0): 0, TopicPartition("t", 1): 7}
