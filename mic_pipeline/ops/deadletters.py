"""Dead letters as the operator sees them: parsing the contract's JSON, filtering, replay decisions.

A dead letter (CONTRACT.md, "Dead letters") carries the failed record's original coordinates and
bytes: `original_value` is the text itself when the bytes were valid UTF-8, else base64 with
`original_encoding: "base64"` (the same rule applies to `original_key` with `original_key_encoding`;
both additions of `schemas.deadletter`, which also marks a value cut short with `original_truncated`).
The parser here is lenient on purpose: a dead letter with a reason code this version does not know
is still listed.
Nothing here touches Kafka; `mic_pipeline.ops.deadletter_io` reads and re-publishes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.topics import INPUT_TOPICS

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class InvalidDeadLetter(ValueError):
    """A record of the dead-letter topic that is not a contract dead letter."""


@dataclass(frozen=True)
class DeadLetterView:
    """One dead letter, decoded; `position` is its own (partition, offset) in the dead-letter topic."""

    reason: str
    detail: str
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    original_key: bytes | None
    original_value: bytes
    event_id: str | None
    event_type: str | None
    failed_at: datetime | None
    position: tuple[int, int]
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form for `deadletters list --json` (bytes as text, or base64 when not UTF-8)."""
        key_text, key_encoding = _as_text(self.original_key)
        value_text, value_encoding = _as_text(self.original_value)
        return {
            "reason": self.reason,
            "detail": self.detail,
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "original_key": key_text,
            "original_key_encoding": key_encoding,
            "original_value": value_text,
            "original_encoding": value_encoding,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "failed_at": None if self.failed_at is None else self.failed_at.isoformat(),
            "deadletter_partition": self.position[0],
            "deadletter_offset": self.position[1],
            "original_truncated": self.truncated,
        }


def _as_text(raw: bytes | None) -> tuple[str | None, str]:
    if raw is None:
        return None, "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _decode_bytes(text: Any, encoding: Any, name: str) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidDeadLetter(f"{name} is not a string")
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise InvalidDeadLetter(f"{name} is not valid base64") from exc
    return text.encode("utf-8")


def _optional_str(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    return value if isinstance(value, str) else None


def _optional_int(document: Mapping[str, Any], name: str) -> int | None:
    value = document.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 timestamp (`Z` allowed; naive means UTC) as tz-aware UTC."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_dead_letter(value: bytes, position: tuple[int, int]) -> DeadLetterView:
    """Decode one record of the dead-letter topic; raises `InvalidDeadLetter` when it is not one."""
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidDeadLetter(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidDeadLetter("not a JSON object")
    reason, topic = document.get("reason"), document.get("original_topic")
    if not isinstance(reason, str) or not isinstance(topic, str):
        raise InvalidDeadLetter("reason or original_topic missing")
    original_value = _decode_bytes(
        document.get("original_value"), document.get("original_encoding"), "original_value"
    )
    failed_text = document.get("failed_at")
    try:
        failed_at = parse_timestamp(failed_text) if isinstance(failed_text, str) else None
    except ValueError as exc:
        raise InvalidDeadLetter(f"failed_at is not a timestamp: {failed_text!r}") from exc
    return DeadLetterView(
        reason=reason,
        detail=_optional_str(document, "detail") or "",
        original_topic=topic,
        original_partition=_optional_int(document, "original_partition"),
        original_offset=_optional_int(document, "original_offset"),
        original_key=_decode_bytes(
            document.get("original_key"), document.get("original_key_encoding"), "original_key"
        ),
        original_value=b"" if original_value is None else original_value,
        event_id=_optional_str(document, "event_id"),
        event_type=_optional_str(document, "event_type"),
        failed_at=failed_at,
        position=position,
        truncated=document.get("original_truncated") is True,
    )


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: a duration back from `now` (`90s`, `15m`, `2h`, `7d`) or an ISO timestamp."""
    match = _RELATIVE.match(text.strip().lower())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise ValueError(
            f"--since must be a duration like 15m/2h/7d or an ISO timestamp, got {text!r}"
        ) from exc


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a command acts on; empty fields match everything."""

    reasons: frozenset[str] = frozenset()
    event_ids: frozenset[str] = frozenset()
    since: datetime | None = None

    def matches(self, letter: DeadLetterView) -> bool:
        """Whether `letter` passes every given criterion (`since` compares `failed_at`)."""
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.event_ids and letter.event_id not in self.event_ids:
            return False
        return not (self.since is not None and (letter.failed_at is None or letter.failed_at < self.since))


def count_by_reason(letters: Iterable[DeadLetterView]) -> dict[str, int]:
    """Dead letters per reason, reasons sorted."""
    counts: dict[str, int] = {}
    for letter in letters:
        counts[letter.reason] = counts.get(letter.reason, 0) + 1
    return dict(sorted(counts.items()))


def physical_topics(original_topic: str, topic_prefix: str) -> tuple[str, str]:
    """(physical, logical) names of a dead letter's original topic, whichever form it was recorded in."""
    if topic_prefix and original_topic.startswith(topic_prefix):
        return original_topic, original_topic[len(topic_prefix) :]
    return f"{topic_prefix}{original_topic}", original_topic


@dataclass(frozen=True)
class ReplayDecision:
    """Whether to re-publish one dead letter, and where; `skip_reason` is None to replay."""

    letter: DeadLetterView
    target_topic: str
    skip_reason: str | None


def format_letter(letter: DeadLetterView) -> str:
    """One human line per dead letter for `deadletters list`."""
    failed = "-" if letter.failed_at is None else letter.failed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    origin = f"{letter.original_topic}[{letter.original_partition}]@{letter.original_offset}"
    event = f"{letter.event_type or '-'} {letter.event_id or '-'}"
    return f"{failed}  {letter.reason:<20} {origin:<32} {event}  {letter.detail}"


def summarize_decisions(decisions: Sequence[ReplayDecision]) -> dict[str, Any]:
    """Counts of a replay: selected, replayed, skipped per skip reason."""
    skipped: dict[str, int] = {}
    for decision in decisions:
        if decision.skip_reason is not None:
            skipped[decision.skip_reason] = skipped.get(decision.skip_reason, 0) + 1
    replayed = sum(1 for d in decisions if d.skip_reason is None)
    return {"selected": len(decisions), "replayed": replayed, "skipped": dict(sorted(skipped.items()))}


Validator = Callable[[bytes, str], "str | None"]
"""`validator(raw, logical_topic)`: None when `raw` now decodes as a valid event of that input topic,
else the failure's reason code (e.g. `malformed`)."""


def decide_replay(
    letter: DeadLetterView, topic_prefix: str, validator: Validator, force: bool
) -> ReplayDecision:
    """Replay a dead letter to its original topic unless its bytes still fail validation there, or the
    original topic is not a family input topic (where validation does not apply); `force` replays
    regardless. Business-rule failures (`unknown_company`, `invalid_transition`) decode fine, so they
    are replayed: the stream re-checks them against the current state. A value the stream kept only
    a prefix of (`original_truncated`) is never replayed, not even forced."""
    physical, logical = physical_topics(letter.original_topic, topic_prefix)
    if letter.truncated:
        return ReplayDecision(letter, physical, "original value truncated")
    if force:
        return ReplayDecision(letter, physical, None)
    if logical not in INPUT_TOPICS:
        return ReplayDecision(letter, physical, "not a family input topic")
    failure = validator(letter.original_value, logical)
    return ReplayDecision(letter, physical, None if failure is None else f"still invalid: {failure}")


REPEAT_SKIP = "repeat of an event already selected"


def decide_replays(
    letters: Iterable[DeadLetterView], topic_prefix: str, validator: Validator, force: bool
) -> list[ReplayDecision]:
    """`decide_replay` for each letter, except that an event is replayed once however many dead
    letters it has (a worker restart can dead-letter the same record again; a producer retry can
    fail twice): by `event_id`, or by the original coordinates when the id was unreadable."""
    decisions: list[ReplayDecision] = []
    seen: set[object] = set()
    for letter in letters:
        key: object = letter.event_id or (
            letter.original_topic,
            letter.original_partition,
            letter.original_offset,
        )
        if key in seen:
            physical, _ = physical_topics(letter.original_topic, topic_prefix)
            decisions.append(ReplayDecision(letter, physical, REPEAT_SKIP))
            continue
        seen.add(key)
        decisions.append(decide_replay(letter, topic_prefix, validator, force))
    return decisions
