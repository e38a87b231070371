"""What is on a broker: its topics and the end offset of every partition.

The sum of a topic's end offsets counts the records ever appended (minus nothing: retention and
compaction do not lower end offsets), plus one offset per transaction marker when transactional
producers wrote to it; for the pipeline's input topics, written without transactions, it is the
number of events published.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mic_pipeline.config import Settings
from mic_pipeline.infra.topics import admin_client


@dataclass(frozen=True)
class TopicOffsets:
    """One topic's partitions and their end offsets (partition -> next offset to be written)."""

    name: str
    end_offsets: Mapping[int, int]

    @property
    def total(self) -> int:
        """The sum of the partitions' end offsets."""
        return sum(self.end_offsets.values())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: name, partition count, total and the per-partition end offsets."""
        return {
            "name": self.name,
            "partitions": len(self.end_offsets),
            "total": self.total,
            "end_offsets": {str(partition): offset for partition, offset in sorted(self.end_offsets.items())},
        }


def collect_topic_offsets(
    target: Settings | str, *, prefix: str = "", include_internal: bool = False, timeout_s: float = 10.0
) -> list[TopicOffsets]:
    """The end offsets of every topic on the broker of `target` (settings, or a plain broker's
    bootstrap) whose name starts with `prefix`, sorted by name.

    Internal topics (`__consumer_offsets`, `__transaction_state`, ...) are left out unless asked.
    """
    from kafka import TopicPartition
    from kafka.protocol.consumer.offsets import OffsetSpec

    with admin_client(target, timeout_s=timeout_s) as admin:
        described = admin.describe_topics()
        partitions: list[Any] = []
        names: list[str] = []
        for topic in described:
            name = topic["name"]
            if not name.startswith(prefix) or (name.startswith("__") and not include_internal):
                continue
            names.append(name)
            partitions.extend(TopicPartition(name, p["partition_index"]) for p in topic["partitions"])
        offsets = (
            admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST)) if partitions else {}
        )
    by_topic: dict[str, dict[int, int]] = {name: {} for name in names}
    for partition, result in offsets.items():
        by_topic[partition.topic][partition.partition] = result.offset
    return [TopicOffsets(name, by_topic[name]) for name in sorted(names)]


def format_offsets_table(topics: Sequence[TopicOffsets]) -> str:
    """A plain-text table: topic, partitions, total, `partition:end` pairs, and a total row."""
    if not topics:
        return "(no topics)"
    grand_total = sum(topic.total for topic in topics)
    width = max(len("TOPIC"), *(len(topic.name) for topic in topics))
    total_width = max(len("END OFFSETS"), len(str(grand_total)))
    lines = [f"{'TOPIC':<{width}}  PARTS  {'END OFFSETS':>{total_width}}  PER PARTITION"]
    for topic in topics:
        per_partition = " ".join(f"{p}:{o}" for p, o in sorted(topic.end_offsets.items()))
        counts = f"{len(topic.end_offsets):>5}  {topic.total:>{total_width}}"
        lines.append(f"{topic.name:<{width}}  {counts}  {per_partition}")
    partitions = sum(len(topic.end_offsets) for topic in topics)
    lines.append(f"{'(all shown)':<{width}}  {partitions:>5}  {grand_total:>{total_width}}")
    return "\n".join(lines)
