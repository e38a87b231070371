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

Owners are fenced in the changelog itself. A worker that takes a partition first writes a *claim*
to its changelog partition (key `~claim:<unique>`, never compacted away: each key is new), then
loads it; the claim's offset is the worker's *epoch* there, and every record it writes carries it
in the header `mic-owner`. A load applies a record only if its epoch is at least the offset of the
latest claim before it: a worker frozen past its session timeout (a zombie) that resumes and runs
one more checkpoint after its successor's claim writes records every later load skips -- the
successor's claim came first, so its state wins whatever the zombie wrote after it. The offset
commit of such a zombie is refused by the group (old generation); its outputs repeat decisions of
records the successor decides again (absorbed by `event_id`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_MISSING = object()
OWNER_HEADER = "mic-owner"
"""Header of every changelog record: the writer's epoch (the offset of its claim), ASCII decimal."""
CLAIM_PREFIX = "~claim:"
"""Key prefix of claim records (no state key starts with '~')."""
NO_EPOCH = -1
"""The epoch of records written before claims existed (no header), and of a store not claimed yet."""


def epoch_of(headers: Iterable[tuple[str, bytes]] | None) -> int:
    """The `mic-owner` epoch in a changelog record's headers (`NO_EPOCH` if there is none)."""
    for name, value in headers or ():
        if name == OWNER_HEADER:
            try:
                return int(value)
            except (TypeError, ValueError):
                return NO_EPOCH
    return NO_EPOCH


def key_kind(key: str) -> str:
    """The kind of a state key: its prefix before the first ':' or '|' (the whole key if none)."""
    for index, char in enumerate(key):
        if char in ":|":
            return key[:index]
    return key


def _written_order(store: dict[str, Any], keys: set[str]) -> list[str]:
    """Changelog order within a checkpoint: held decisions (`x:` values, `streams.outbox`) first,
    then every other key, then deletions of held decisions -- each group by key. A changelog
    partition keeps a prefix of what it was handed: if anything of a checkpoint is kept, its new held
    entries are, and an entry is deleted only after what its taking changed (its wait queue)."""
    held: list[str] = []
    other: list[str] = []
    taken: list[str] = []
    for key in keys:
        if key.startswith("x:"):
            (held if dict.__contains__(store, key) else taken).append(key)
        else:
            other.append(key)
    return sorted(held) + sorted(other) + sorted(taken)


class PartitionStore(dict[str, Any]):
    """The state of one partition: a dict that remembers its changes since the last checkpoint.

    A `dict` subclass so that reads (`get`, `in`, `[]`) run at C speed; every write goes through
    `__setitem__`, `__delitem__` or `pop` (the processor uses nothing else -- `update` or
    `setdefault` would bypass the change tracking). Values must be JSON-encodable and must not be
    mutated in place after they are stored (the processor always stores new lists and dicts):
    `take_changes` encodes the current objects.
    """

    def __init__(self, partition: int, data: dict[str, Any] | None = None) -> None:
        super().__init__(data or {})
        self.partition = partition
        self._changed: set[str] = set()
        self._fresh: set[str] = set()
        """Keys created since the last checkpoint (not in the changelog: deleting them costs nothing)."""
        self.epoch = NO_EPOCH
        """This worker's claim offset on the partition, stamped on every record it writes."""
        self.latest_claim = NO_EPOCH
        """While loading: the offset of the latest claim read so far."""
        self.fenced = 0
        """Records the load skipped: written by an owner after a newer owner's claim."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._changed and not dict.__contains__(self, key):
            self._fresh.add(key)
        dict.__setitem__(self, key, value)
        self._changed.add(key)

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, key)
        self._forget(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if dict.__contains__(self, key):
            value = dict.pop(self, key)
            self._forget(key)
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("PartitionStore.update would bypass change tracking: assign keys one by one")

    def setdefault(self, key: str, default: Any = None) -> Any:
        raise TypeError("PartitionStore.setdefault would bypass change tracking")

    def _forget(self, key: str) -> None:
        if key in self._fresh:  # never reached the changelog: nothing to delete there
            self._fresh.discard(key)
            self._changed.discard(key)
        else:
            self._changed.add(key)

    # --- checkpoint ---------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Changelog records the next checkpoint will write."""
        return len(self._changed)

    def changed_keys(self) -> list[str]:
        """The keys the next `take_changes` writes."""
        return list(self._changed)

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The headers of the changelog records this store writes (its epoch)."""
        return [(OWNER_HEADER, str(self.epoch).encode())]

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        """The changelog records of every key changed since the last call: `(key, JSON value)`, or
        `(key, None)` for a deleted key. The store then counts them as written."""
        records = [
            (key.encode(), _encode(dict.__getitem__(self, key)) if dict.__contains__(self, key) else None)
            for key in _written_order(self, self._changed)
        ]
        self._changed = set()
        self._fresh = set()
        return records

    def apply_changelog(
        self, key: bytes | None, value: bytes | None, offset: int = 0, epoch: int = NO_EPOCH
    ) -> None:
        """Replay one changelog record (recovery): a value sets the key, a tombstone deletes it; a
        claim starts a new epoch; a record of an older epoch than the latest claim is skipped."""
        if key is None:
            return
        name = key.decode()
        if name.startswith(CLAIM_PREFIX):
            self.latest_claim = offset
            return
        if epoch < self.latest_claim:
            self.fenced += 1
            return
        if value is None:
            dict.pop(self, name, None)
        else:
            dict.__setitem__(self, name, _decode(value))
