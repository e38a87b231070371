"""Rows of `dead_letters` from records of `mic.deadletter` (pure).

A dead letter is keyed by its original coordinates (topic, partition, offset), so the same failure
published twice (a replayed stream or sink) lands once. A record of the dead-letter topic that is not
a readable dead letter is never dropped: it lands keyed by its own coordinates in the dead-letter
topic, with reason `malformed` and its bytes kept.

`event_id` is the dead letter's, or, when it has none (a malformed record), the one a reader can see in
the original value, so `mic-pipeline trace` finds the record by its id.

Every value is made storable on PostgreSQL too: a text field holding U+0000 (which PostgreSQL text
cannot hold) is escaped (`\\x00`), an `original_value` holding it is kept as base64 of its UTF-8
bytes (`original_encoding: base64`), and short columns are cut to their width. A dead letter the
database still refuses is stored by `unstorable_row`: keyed by its own coordinates, bytes as base64.
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
    """Bytes as UTF-8 text, or as base64 when they are not UTF-8 or hold U+0000."""
    if b"\x00" not in raw:
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError:
            pass
    return base64.b64encode(raw).decode("ascii"), "base64"


def _clean(value: str, width: int | None = None) -> str:
    text = value.replace("\x00", "\\x00") if "\x00" in value else value
    return text if width is None else text[:width]


def _optional_str(value: Any, width: int | None = None) -> str | None:
    return _clean(value, width) if isinstance(value, str) else None


def _value_text(value: Any, encoding: Any) -> tuple[str | None, str | None]:
    """`original_value` and its encoding, as base64 when the text holds U+0000."""
    if not isinstance(value, str):
        return None, _optional_str(encoding, 16)
    if "\x00" in value:
        return base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii"), "base64"
    return value, _optional_str(encoding, 16)


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
        "detail": _clean(f"unreadable dead-letter record ({why}); kept with its own coordinates"),
        "event_id": None,
        "event_type": None,
        "original_key": key,
        "original_value": value,
        "original_encoding": encoding,
        "failed_at": None,
        "deadletter_partition": record.partition,
        "deadletter_offset": record.offset,
    }


def unstorable_row(record: SourceRecord, error: str) -> dict[str, Any]:
    """The row of a dead-letter record the database refused: its own coordinates, bytes in base64."""
    row = _unreadable(record, f"the database refused it: {_clean(error, 300)}")
    row["original_value"] = base64.b64encode(record.value).decode("ascii")
    row["original_encoding"] = "base64"
    if record.key is not None:
        row["original_key"] = base64.b64encode(record.key).decode("ascii")
    return row


def _readable_event_id(value: str) -> str | None:
    """The `event_id` a reader can see in an original value the decoder refused (duplicate keys, a
    value too large...): the column indexes dead letters for `mic-pipeline trace`. None when the
    value is not a JSON object with a string `event_id` of at most 64 characters."""
    from sinks.rows import peek_identity

    event_id = peek_identity(value.encode("utf-8", "surrogatepass"))[0]
    return event_id if event_id is not None and len(event_id) <= 64 and "\x00" not in event_id else None


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
    if not -(2**31) <= partition < 2**31 or not -(2**63) <= offset < 2**63:
        return _unreadable(record, "original_partition/original_offset out of range")
    value, encoding = _value_text(letter.get("original_value"), letter.get("original_encoding"))
    event_id = _optional_str(letter.get("event_id"), 64)
    if event_id is None and encoding in (None, "utf-8") and value is not None:
        event_id = _readable_event_id(value)
    return {
        "original_topic": _clean(str(letter["original_topic"]), 249),
        "original_partition": partition,
        "original_offset": offset,
        "reason": _clean(str(letter["reason"]), 40),
        "detail": _clean(str(letter["detail"])),
        "event_id": event_id,
        "event_type": _optional_str(letter.get("event_type"), 64),
        "original_key": _optional_str(letter.get("original_key")),
        "original_value": value,
        "original_encoding": encoding,
        "failed_at": _timestamp(letter.get("failed_at")),
        "deadletter_partition": record.partition,
        "deadletter_offset": record.offset,
    }
