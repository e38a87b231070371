"""A mapping that counts its writes by key kind: how much changelog traffic each rule causes.

Every write or delete of a faust table entry is one changelog record, produced and acknowledged
before the input offset is committed (`streams.delivery`), so state writes are a main cost of the
worker. `MeteredMapping` wraps a table for `streams.processor` and counts writes and deletes per
key kind (the prefix before the first `:` or `|`, e.g. `e` for de-duplication markers, `r` for
parked records) in `mic_streams_state_writes_total{table, kind, op}`.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from prometheus_client import Counter

STATE_WRITES = Counter(
    "mic_streams_state_writes_total",
    "Writes (set) and deletes (delete) of stream table entries, by table and key kind",
    ["table", "kind", "op"],
)


def key_kind(key: str) -> str:
    """The kind of a state key: its prefix before the first ':' or '|' (the whole key if none)."""
    for index, char in enumerate(key):
        if char in ":|":
            return key[:index]
    return key


class MeteredMapping(MutableMapping[str, Any]):
    """`inner` with its writes and deletes counted (reads pass through unchanged)."""

    def __init__(self, inner: MutableMapping[str, Any], table: str) -> None:
        self.inner = inner
        self.table = table
        self._counters: dict[tuple[str, str], Any] = {}

    def _count(self, key: str, op: str) -> None:
        kind = key_kind(key)
        counter = self._counters.get((kind, op))
        if counter is None:
            counter = self._counters[(kind, op)] = STATE_WRITES.labels(table=self.table, kind=kind, op=op)
        counter.inc()

    def __getitem__(self, key: str) -> Any:
        return self.inner[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.inner.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def __setitem__(self, key: str, value: Any) -> None:
        self._count(key, "set")
        self.inner[key] = value

    def __delitem__(self, key: str) -> None:
        self._count(key, "delete")
        del self.inner[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def items(self) -> Any:
        return self.inner.items()
