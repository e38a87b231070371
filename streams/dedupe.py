"""Event-time retention of the de-duplication markers (contract rule 3), with bounded memory.

The stream remembers each decided `event_id` as a marker in its state table. This index says which
markers to forget: per input topic-partition (a "stream", e.g. `mic.orders/2`) it tracks the
markers by event day (UTC date of `occurred_at`, as a day ordinal) and a watermark, the latest
event day seen in that stream (capped at tomorrow by wall clock, so one event from the far future
cannot expire everything). Markers whose day is more than `retention_days` before the watermark
are returned for deletion. Watermarks are per topic, not per partition number: one topic may lag
another by days of event time, and its markers must not expire because the other ran ahead.

A day's markers are also kept until `grace_s` of wall-clock time passed since that day was last
written, so a replay never misses a marker however fast event time runs (see `REPLAY_GRACE_S`).

Memory bound: per stream, the markers of events whose event day lies within `retention_days`
of the watermark (plus the current day), plus those written in the last `grace_s` seconds. An
event older than the horizon is processed normally and its marker dropped after the grace, so its
de-duplication is best effort -- the retention is the documented limit of rule 3.
The index itself is rebuilt from the recovered table after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
EXPIRY_CHECK_S = 1.0
"""A stream's days are checked for expiry at most once per this much wall time: `note` is then
O(1) per marker, not O(days) (a marker expiring a second late changes nothing)."""
REPLAY_GRACE_S = 600.0
"""A marker is kept at least this long (wall clock) after its day was last written: a record
replayed after a crash (one commit interval back) or waiting for its member must find its marker,
however fast event time runs (a replay of simulated months in seconds)."""


class _Stream:
    """One stream's index: marker keys by event day, when each day was last written, the
    watermark and the wall time of the last expiry check."""

    __slots__ = ("checked", "days", "watermark", "written")

    def __init__(self, days: dict[int, set[str]], now: float) -> None:
        self.days = days
        self.written = dict.fromkeys(days, now)
        self.watermark: int | None = max(days) if days else None
        self.checked: float | None = None


class DedupeRetention:
    """Which de-duplication markers have fallen out of the event-time retention window."""

    def __init__(self, retention_days: int, *, grace_s: float = REPLAY_GRACE_S) -> None:
        if retention_days < 1:
            raise ValueError(f"retention_days must be >= 1, got {retention_days}")
        self.retention_days = retention_days
        self.grace_s = grace_s
        self._streams: dict[str, _Stream] = {}

    def knows(self, stream: str) -> bool:
        """Whether the stream's markers were loaded (or noted) in this process."""
        return stream in self._streams

    def load(self, stream: str, markers: Iterable[tuple[str, int]], now: float) -> None:
        """Index existing markers `(key, day)` of a stream (after recovery), replacing what was known."""
        days: dict[int, set[str]] = {}
        for key, day in markers:
            days.setdefault(day, set()).add(key)
        self._streams[stream] = _Stream(days, now)

    def note(self, stream: str, key: str, day: int, now: float) -> list[str]:
        """Record a new marker written at wall-clock `now`; returns the keys that have now expired.

        Called once per decided record: one lookup per index, no allocation but a new day's set,
        and the days scanned for expiry at most once per `EXPIRY_CHECK_S`.
        """
        index = self._streams.get(stream)
        if index is None:
            index = self._streams[stream] = _Stream({}, now)
        days = index.days
        keys = days.get(day)
        if keys is None:
            days[day] = {key}
        else:
            keys.add(key)
        index.written[day] = now
        watermark = index.watermark
        if watermark is None or day > watermark:
            watermark = day
        tomorrow = int(now // 86400) + _EPOCH_ORDINAL + 1
        if watermark > tomorrow:
            watermark = tomorrow
        index.watermark = watermark
        checked = index.checked
        if checked is not None and now - checked < EXPIRY_CHECK_S:
            return []
        index.checked = now
        horizon = watermark - self.retention_days
        written = index.written
        expired: list[str] = []
        for old_day in [d for d in days if d < horizon and written[d] < now - self.grace_s]:
            expired.extend(sorted(days.pop(old_day)))
            del written[old_day]
        return expired

    def size(self, stream: str) -> int:
        """Markers currently indexed for a stream."""
        index = self._streams.get(stream)
        return sum(len(keys) for keys in index.days.values()) if index else 0
