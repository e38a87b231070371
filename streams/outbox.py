"""The outbox: decisions whose outputs wait until the state that records them is durable.

A decision is normally a function of its input record and of the state, and a crash rolls both
back together: the records since the last commit are read again and decided the same way, their
outputs sent again with the same `event_id` (absorbed by the sinks). One kind of decision is not:
a parked record decided because it has waited `member_wait_s` (rule 1's expiry -- the
`unknown_company` dead letter, or a record decided on its own ahead of the ones it waited behind).
Its waiting time is state as well; after a kill -9 the restored clock says it waited less, and if
its member joined meanwhile it would be decided the other way: a dead letter already out, then a
row for the same event.

So such a decision is *held* (`EventProcessor.recheck`): its outputs go under `x:<origin>` in the
partition's state, next to the rest of the decision, and are handed to the outputs only once a
checkpoint has made that state durable (`streams.checkpoint`, `on_durable`); the same checkpoint then
writes the entry's deletion. While it is held the record stays first in its entity's wait queue, so
every later record of the entity -- parked or new -- waits behind it: nothing that depends on the
held decision goes out before it is durable. A crash before the state was durable loses the decision
with its state, and nothing of it or of its entity's later records was sent: the record is parked
again and decided afresh. A crash after it restores the entry, which the next checkpoint sends again
(at least once, like every repeated output).

A checkpoint cut short keeps a prefix of its changelog records (one partition, an idempotent
producer). They are written with new held entries first and deletions of taken ones last
(`streams.store`), so a restored entry may have lost the rest of its decision: the entry carries
each of its writes with the value before and after the decision, and `restore` -- run when a
processor is made over a recovered store -- writes the after value where the durable value is still
the one before (a write that landed, or a key a later decision changed durably, is left alone), in
the order the decisions were held. It also releases the record from parking and puts it back first
in its entity's wait queue. (A cut-short checkpoint is not atomic for other decisions either:
`streams/README.md`, known limits.)

State value: `x:<origin>` = `[1, seq, entity key or null, marker key or null, writes, enriched,
dead letters, members]`: `seq` orders the held decisions of a partition, `writes` = `[["s" (state)
or "a" (aggregates), key, before, after], ...]` (null: absent), `enriched` = `[[family, key, value
(base64)], ...]`, `dead letters` = `[[key (base64) or null, value (base64), reason], ...]`,
`members` = `[[company id, member], ...]`. An entry of another version, or one that does not
decode, is logged (its key and size) and left alone: its record and entity stay undecided until a
version that reads it runs.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import MutableMapping
from typing import Any

from schemas.topics import Family
from streams.parking import PARKED_PREFIX, ParkingLot
from streams.records import Outcome

log = logging.getLogger(__name__)
OUTBOX_PREFIX = "x:"
VERSION = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encode_outcome(outcome: Outcome) -> list[Any]:
    """The outputs of `outcome` as JSON-encodable lists (the last three fields of an entry)."""
    enriched = [[family.value, key, _b64(value)] for family, key, value in outcome.enriched]
    letters = [
        [_b64(key) if key is not None else None, _b64(value), reason]
        for key, value, reason in outcome.dead_letters
    ]
    members = [[company_id, member] for company_id, member in outcome.members]
    return [enriched, letters, members]


def decode_outcome(fields: list[Any]) -> Outcome:
    """The inverse of `encode_outcome`."""
    enriched, letters, members = fields
    return Outcome(
        enriched=[(Family(family), key, base64.b64decode(value)) for family, key, value in enriched],
        dead_letters=[
            (base64.b64decode(key) if key is not None else None, base64.b64decode(value), reason)
            for key, value, reason in letters
        ],
        members=[(company_id, member) for company_id, member in members],
    )


def held_outcome(entry: Any) -> Outcome | None:
    """The outputs an entry holds, or None when it is not a whole entry of this version."""
    try:
        version, seq, entity, marker, writes = entry[:5]
        if version != VERSION or type(seq) is not int:
            return None
        if not (entity is None or type(entity) is str) or not (marker is None or type(marker) is str):
            return None
        if not all(len(w) == 4 and w[0] in ("s", "a") and type(w[1]) is str for w in writes):
            return None
        return decode_outcome(entry[5:])
    except (TypeError, ValueError, IndexError, KeyError):
        return None


class Outbox:
    """The held decisions of one partition's state (see the module doc).

    An in-memory index of the entries (key -> seq) is built from the state on first use (after a
    start or a recovery, entries restored from the changelog are in it) and kept up to date by
    `hold` and `take`.
    """

    def __init__(
        self, state: MutableMapping[str, Any], aggregates: MutableMapping[str, Any], parking: ParkingLot
    ) -> None:
        self.state = state
        self.aggregates = aggregates
        self.parking = parking
        self._keys: dict[str, int] | None = None

    def _index(self) -> dict[str, int]:
        if self._keys is None:
            found = {}
            for key in list(self.state):
                if key.startswith(OUTBOX_PREFIX):
                    entry = self.state[key]
                    if held_outcome(entry) is None:
                        log.error("held decision %s (%d bytes) is not readable here: left alone, its "
                                  "record and entity stay undecided", key, len(repr(entry)))  # fmt: skip
                        continue
                    found[key] = entry[1]
            self._keys = dict(sorted(found.items(), key=lambda item: item[1]))
        return self._keys

    def __len__(self) -> int:
        return len(self._index())

    def holds(self, origin: str) -> bool:
        """Whether the decision of the record at `origin` is held (decided; outputs not sent yet)."""
        return f"{OUTBOX_PREFIX}{origin}" in self.state

    def before(self, *, entity: str | None, marker: str | None, count: str) -> list[list[Any]]:
        """The keys a decision of a record may write, with their values now: call right before
        deciding a record that may be held, and pass the result to `hold`."""
        keys: list[list[Any]] = []
        if entity is not None:
            queue = f"w:{entity}"
            keys += [["s", entity, self.state.get(entity)], ["s", queue, self.state.get(queue)]]
        if marker is not None:
            keys.append(["s", marker, self.state.get(marker)])
        keys.append(["a", count, self.aggregates.get(count)])
        return keys

    def hold(
        self,
        origin: str,
        outcome: Outcome,
        *,
        entity: str | None,
        marker: str | None,
        before: list[list[Any]],
    ) -> None:
        """Keep `outcome` until the state is durable and put `origin` back first in its entity's
        wait queue until then. `entity`, `marker`: state keys of the record's entity and marker;
        `before`: what `before` returned right before the decision."""
        if entity is not None:
            queue_key = f"w:{entity}"
            queue = [o for o in self.state.get(queue_key) or [] if o != origin]
            self.state[queue_key] = [origin, *queue]
        writes = [
            [mapping, name, value, (self.state if mapping == "s" else self.aggregates).get(name)]
            for mapping, name, value in before
        ]
        index = self._index()
        seq = max(index.values(), default=-1) + 1
        key = f"{OUTBOX_PREFIX}{origin}"
        self.state[key] = [VERSION, seq, entity, marker, writes, *encode_outcome(outcome)]
        index[key] = seq

    def take(self) -> list[tuple[str, Outcome]]:
        """Every held decision as `(origin, outcome)` in the order they were held, deleted from the
        state with the record's place in its wait queue. Call only once the state holding them is
        durable, and make the deletions durable only after their outputs are acknowledged."""
        keys = self._index()
        taken = []
        for key in list(keys):
            entry = self.state.get(key)
            del keys[key]
            outcome = held_outcome(entry)
            if entry is None or outcome is None:
                continue
            origin = key[len(OUTBOX_PREFIX) :]
            self.state.pop(key)
            if entry[2] is not None:
                self._dequeue(f"w:{entry[2]}", origin)
            taken.append((origin, outcome))
        return taken

    def restore(self) -> int:
        """Complete the held decisions a checkpoint cut short left (see the module doc): call once
        on a recovered state, before anything is decided. Returns how many writes it redid."""
        completed = 0
        for key in self._index():
            _, _, entity, _, writes, *_ = self.state[key]
            origin = key[len(OUTBOX_PREFIX) :]
            partition = int(origin.rsplit("/", 2)[1])
            self.parking.release(partition, [f"{PARKED_PREFIX}{origin}"])
            for mapping, name, before, after in writes:
                target = self.state if mapping == "s" else self.aggregates
                if before != after and target.get(name) == before:
                    if after is None:
                        target.pop(name, None)
                    else:
                        target[name] = after
                    completed += 1
            if entity is not None:
                queue_key = f"w:{entity}"
                queue = self.state.get(queue_key) or []
                if queue[:1] != [origin]:
                    self.state[queue_key] = [origin, *(o for o in queue if o != origin)]
        return completed

    def _dequeue(self, queue_key: str, origin: str) -> None:
        queue = self.state.get(queue_key)
        if queue and origin in queue:
            rest = [o for o in queue if o != origin]
            if rest:
                self.state[queue_key] = rest
            else:
                self.state.pop(queue_key, None)
