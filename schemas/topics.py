"""Topic names of the contract (`CONTRACT.md`, "Families, topics and types") and of the pipeline.

Physical names get `Settings.topic_prefix` in front (`Settings.topic`); these are the logical ones.
"""

from __future__ import annotations

from enum import StrEnum


class Family(StrEnum):
    """An event family: the part of `event_type` before the dot."""

    MEMBER = "member"
    ORDER = "order"
    PATENT = "patent"
    FACTORING = "factoring"

    @property
    def topic(self) -> str:
        """The family's input topic, e.g. `mic.orders`."""
        return _INPUT_TOPICS[self]

    @property
    def enriched_topic(self) -> str:
        """The stream's output topic for the family, e.g. `mic.orders.enriched`."""
        return f"{self.topic}.enriched"

    @property
    def table(self) -> str:
        """The warehouse event table (and Parquet dataset directory) of the family."""
        return _EVENT_TABLES[self]


_INPUT_TOPICS = {
    Family.MEMBER: "mic.membership",
    Family.ORDER: "mic.orders",
    Family.PATENT: "mic.patents",
    Family.FACTORING: "mic.factoring",
}

_EVENT_TABLES = {
    Family.MEMBER: "member_events",
    Family.ORDER: "order_events",
    Family.PATENT: "patent_events",
    Family.FACTORING: "factoring_events",
}

DEADLETTER_TOPIC = "mic.deadletter"
AGGREGATES_TOPIC = "mic.aggregates"

INPUT_TOPICS: tuple[str, ...] = tuple(f.topic for f in Family)
ENRICHED_TOPICS: tuple[str, ...] = tuple(f.enriched_topic for f in Family)


def family_of_topic(topic: str) -> Family | None:
    """The family whose input topic is `topic` (a logical name), or None."""
    for family in Family:
        if family.topic == topic:
            return family
    return None
