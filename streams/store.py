"""The state of one partition as a write-back cache over its changelog partition.

Every key the processor writes for input partition `p` (markers, entities, wait queues, parked
records, the partition clock, counts: `streams.processor`) lives in one `PartitionStore`, in
memory. Nothing is produced on a write: the store remembers which keys changed since the last
checkpoint, and `take_changes` hands the checkpoint one changelog record per changed key -- the
last value wins, a deleted key becomes a tombstone, and a key that was created and deleted between
two checkpoints (a record parked and released at once) costs nothing. This is the order Kafka
Streams' record cache and Quix Streams' per-checkpoint state transactions use.

The changelog is the compacted topic `<app>-state-changelog`, partition `p`: key = the state key
(UTF-8), value = the JSON value, or null for a deletion. A store is rebuilt after a restart or a
rebalance by reading its partition from the beginning (`streams.recovery`), so it holds exactly
what the last checkpoint before a crash made durable -- possibly more than the committed input
offsets cover, never less (the checkpoint flushes state before committing offsets); the processor
treats state ahead of the offsets as a replay.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_MISSING = object()


def key_kind(key: str) -> str:
    """The kind of a state key: its prefix before the first ':' or '|' (the whole key if none)."""
    for index, char in enumerate(key):
        if char in ":|":
            return key[:index]
    return key


class PartitionStore(MutableMapping[str, Any]):
    """The state of one partition: a dict that remembers its changes since the last checkpoint.

    Values must be JSON-encodable and must not be mutated in place after they are stored (the
    processor always stores new lists and dicts): `take_changes` encodes the current objects.
    """

    def __init__(self, partition: int, data: dict[str, Any] | None = None) -> None:
        self.partition = partition
        self._data: dict[str, Any] = data if data is not None else {}
        self._changed: set[str] = set()
        self._fresh: set[str] = set()
        """Keys created since the last checkpoint (not in the changelog: deleting them costs nothing)."""

    # --- mapping -------------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._data and key not in self._changed:
            self._fresh.add(key)
        self._data[key] = value
        self._changed.add(key)

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._forget(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if key in self._data:
            value = self._data.pop(key)
            self._forget(key)
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def _forget(self, key: str) -> None:
        if key in self._fresh:  # never reached the changelog: nothing to delete there
            self._fresh.discard(key)
            self._changed.discard(key)
        else:
            self._changed.add(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Any:
        return self._data.items()

    # --- checkpoint ---------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Changelog records the next checkpoint will write."""
        return len(self._changed)

    def changed_keys(self) -> list[str]:
        """The keys the next `take_changes` writes."""
        return list(self._changed)

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        """The changelog records of every key changed since the last call: `(key, JSON value)`, or
        `(key, None)` for a deleted key. The store then counts them as written."""
        data = self._data
        records = [
            (key.encode(), _encode(data[key]) if key in data else None) for key in sorted(self._changed)
        ]
        self._changed = set()
        self._fresh = set()
        return records

    def apply_changelog(self, key: bytes | None, value: bytes | None) -> None:
        """Replay one changelog record (recovery): a value sets the key, a tombstone deletes it."""
        if key is None:
            return
        name = key.decode()
        if value is None:
            self._data.pop(name, None)
        else:
            self._data[name] = _decode(value)
