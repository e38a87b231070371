"""Rows of `dead_letters` from records of `mic.deadletter` (pure).

A dead letter is keyed by its original coordinates (topic, partition, offset), so the same failure
published twice (a replayed stream or sink) lands once. A record of the dead-letter topic that is not
a readable dead letter is never dropped: it lands keyed by its own coordinates in the dead-letter
topic, with reason `malformed` and its bytes kept.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import orjson

from schemas.reasons import DeadLetterReason
from sinks.batch import SourceRecord

_REQUIRED = ("reason", "detail", "original_topic", "original_partition", "original_offset")


def _text(raw: bytes) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _timestamp(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _unreadable(record: SourceRecord, why: str) -> dict[str, Any]:
    value, encoding = _text(record.value)
    key = None if record.key is None else _text(record.key)[0]
    return {
        "original_topic": record.topic,
        "original_partition": record.partition,
        "original_offset": record.offset,
        "reason": DeadLetterReason.MALFORMED.value,
        "detail": f"unreadable dead-letter record ({why}); kept with its own coordinates",
        "event_id": None,
        "event_type": None,
        "original_key": key,
        "original_value": value,
        "original_encoding": encoding,
        "failed_at": None,
        "deadletter_partition": record.partition,
        "deadletter_offset": record.offset,
    }


def dead_letter_row(record: SourceRecord) -> dict[str, Any]:
    """The `dead_letters` row of one record of the dead-letter topic."""
    try:
        letter = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        return _unreadable(record, f"not JSON: {exc}")
    if not isinstance(letter, dict):
        return _unreadable(record, "not a JSON object")
    missing = [name for name in _REQUIRED if letter.get(name) is None]
    if missing:
        return _unreadable(record, f"missing {', '.join(missing)}")
    partition, offset = letter["original_partition"], letter["original_offset"]
    if not isinstance(partition, int) or not isinstance(offset, int):
        return _unreadable(record, "original_partition/original_offset are not integers")
    original_value = letter.get("original_value")
    return {
        "original_topic": str(letter["original_topic"]),
        "original_partition": partition,
        "original_offset": offset,
        "reason": str(letter["reason"]),
        "detail": str(letter["detail"]),
        "event_id": _optional_str(letter.get("event_id")),
        "event_type": _optional_str(letter.get("event_type")),
        "original_key": _optional_str(letter.get("original_key")),
        "original_value": original_value if isinstance(original_value, str) else None,
        "original_encoding": _optional_str(letter.get("original_encoding")),
        "failed_at": _timestamp(letter.get("failed_at")),
        "deadletter_partition": record.partition,
        "deadletter_offset": record.offset,
    }
