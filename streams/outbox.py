"""The outbox: decisions whose outputs wait until the state that records them is durable.

A decision is normally a function of its input record and of the state, and a crash rolls both
back together: the records since the last commit are read again and decided the same way, their
outputs sent again with the same `event_id` (absorbed by the sinks). One kind of decision is not:
a parked record decided because it has waited `member_wait_s` (rule 1's expiry -- the
`unknown_company` dead letter, or a record decided on its own ahead of the ones it waited behind).
Its waiting time is state as well; after a kill -9 the restored clock says it waited less, and if
its member joined meanwhile it would be decided the other way: a dead letter already out, then a
row for the same event.

So such a decision is *held* (`EventProcessor.settle`): its outputs go under `x:<origin>` in the
partition's state together with the rest of the decision (its marker, its release from parking),
and are handed to the outputs only once a checkpoint has made that state durable
(`streams.checkpoint`, `on_durable`); the entry is then deleted -- a tombstone the next checkpoint
writes after those outputs are acknowledged. A crash before the state was durable loses the decision
with its state and nothing was sent: the record is parked again and decided afresh. A crash after it
restores the entry, and the first checkpoint after the recovery sends it again (at least once, like
every repeated output).

A checkpoint's changelog records are written in key order with `x:` first (`streams.store`), and a
changelog partition keeps a prefix of what was handed to it, so a durable marker or release implies
a durable entry. The entry also carries the decision's marker and entity: taking it redoes the
release, the dequeue and the marker if the crash kept the entry but not them, and a re-check skips a
parked record whose decision is held.

State value: `x:<origin>` = `[entity key or null, [marker key, marker] or null, enriched, dead
letters, members]`, with `enriched` = `[[family, key, value (base64)], ...]`, `dead letters` =
`[[key (base64) or null, value (base64), reason], ...]`, `members` = `[[company id, member], ...]`.
"""

from __future__ import annotations

import base64
from collections.abc import MutableMapping
from typing import Any

from schemas.topics import Family
from streams.records import Outcome

OUTBOX_PREFIX = "x:"


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


class Outbox:
    """The held decisions of one partition's state (see the module doc).

    An in-memory list of the entry keys is built from the state on first use (after a start or a
    recovery, entries restored from the changelog are in it) and kept up to date by `hold` and
    `take`.
    """

    def __init__(self, state: MutableMapping[str, Any]) -> None:
        self.state = state
        self._keys: dict[str, None] | None = None

    def _index(self) -> dict[str, None]:
        if self._keys is None:
            self._keys = {key: None for key in list(self.state) if key.startswith(OUTBOX_PREFIX)}
        return self._keys

    def __len__(self) -> int:
        return len(self._index())

    def holds(self, origin: str) -> bool:
        """Whether the decision of the record at `origin` is held (decided; outputs not sent yet)."""
        return f"{OUTBOX_PREFIX}{origin}" in self.state

    def hold(self, origin: str, outcome: Outcome, *, entity: str | None, marker: str | None) -> None:
        """Keep `outcome` until the state is durable; `entity` and `marker` are the state keys of the
        record's entity and de-duplication marker (redone by `take` if a crash kept only the entry)."""
        marked = [marker, self.state[marker]] if marker is not None and marker in self.state else None
        key = f"{OUTBOX_PREFIX}{origin}"
        self.state[key] = [entity, marked, *encode_outcome(outcome)]
        self._index()[key] = None

    def take(self) -> list[tuple[str, str | None, list[Any] | None, Outcome]]:
        """Every held decision as `(origin, entity, [marker key, marker] or None, outcome)`, oldest
        first, deleted from the state. Call only once the state holding them is durable, and hand
        their outputs over before the next checkpoint writes the deletions."""
        keys = self._index()
        taken = []
        for key in list(keys):
            entry = self.state.pop(key, None)
            if entry is not None:
                entity, marked, *fields = entry
                taken.append((key[len(OUTBOX_PREFIX) :], entity, marked, decode_outcome(fields)))
        keys.clear()
        return taken
