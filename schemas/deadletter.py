"""Dead letters (`mic.deadletter`): what failed, why, and the original record, byte for byte.

The JSON object has the contract's fields - `reason`, `detail`, `original_topic`,
`original_partition`, `original_offset`, `original_key`, `original_value`, `event_id`,
`event_type`, `failed_at` - plus these compatible additions:
- `original_encoding`: `"utf-8"` when `original_value` is the original text, `"base64"` when the
  bytes were not valid UTF-8 (the contract's rule) - always present;
- `original_key_encoding`: the same for `original_key`;
- `original_size`: the original value's length in bytes; `original_truncated`: true when
  `build_dead_letter(max_value_bytes=...)` kept only a prefix of a huge value (off by default).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Literal

import msgspec

from schemas.reasons import DeadLetterReason

Encoding = Literal["utf-8", "base64"]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One dead letter as it is on `mic.deadletter`."""

    reason: DeadLetterReason
    detail: str
    original_topic: str
    original_partition: int
    original_offset: int
    original_key: str | None
    original_value: str
    event_id: str | None
    event_type: str | None
    failed_at: datetime
    original_encoding: Encoding = "utf-8"
    original_key_encoding: Encoding = "utf-8"
    original_size: int = 0
    original_truncated: bool = False

    def value_bytes(self) -> bytes:
        """The original record value (or its kept prefix when `original_truncated`)."""
        return _from_text(self.original_value, self.original_encoding)

    def key_bytes(self) -> bytes | None:
        """The original record key, None when the record had none."""
        if self.original_key is None:
            return None
        return _from_text(self.original_key, self.original_key_encoding)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(DeadLetter)


def _as_text(data: bytes) -> tuple[str, Encoding]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _from_text(text: str, encoding: Encoding) -> bytes:
    return base64.b64decode(text, validate=True) if encoding == "base64" else text.encode()


def build_dead_letter(
    *,
    reason: DeadLetterReason,
    detail: str,
    original_topic: str,
    original_partition: int,
    original_offset: int,
    original_key: bytes | None,
    original_value: bytes,
    event_id: str | None,
    event_type: str | None,
    failed_at: datetime,
    max_value_bytes: int | None = None,
) -> bytes:
    """The dead-letter JSON for one failed record.

    `failed_at` must be timezone-aware. With `max_value_bytes`, a longer original value is cut to that
    many bytes (`original_truncated: true`, `original_size` keeps the real length) so the dead letter
    fits the broker's message size limit; by default the value is kept whole.
    """
    if failed_at.tzinfo is None:
        raise ValueError("failed_at must be timezone-aware")
    kept = original_value
    truncated = max_value_bytes is not None and len(original_value) > max_value_bytes
    if truncated:
        kept = original_value[:max_value_bytes]
    value_text, value_encoding = _as_text(kept)
    if truncated and value_encoding == "base64":
        # a cut through a multi-byte character must not turn valid UTF-8 into base64
        try:
            original_value.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            value_text, value_encoding = kept.decode("utf-8", errors="ignore"), "utf-8"
    key_text: str | None = None
    key_encoding: Encoding = "utf-8"
    if original_key is not None:
        key_text, key_encoding = _as_text(original_key)
    letter = DeadLetter(
        reason=reason,
        detail=detail,
        original_topic=original_topic,
        original_partition=original_partition,
        original_offset=original_offset,
        original_key=key_text,
        original_value=value_text,
        event_id=event_id,
        event_type=event_type,
        failed_at=failed_at,
        original_encoding=value_encoding,
        original_key_encoding=key_encoding,
        original_size=len(original_value),
        original_truncated=truncated,
    )
    return _ENCODER.encode(letter)


def parse_dead_letter(raw: bytes) -> DeadLetter:
    """Read a dead letter back (for listing and replay). Raises ValueError when `raw` is not one."""
    try:
        letter = _DECODER.decode(raw)
        if letter.original_encoding == "base64":
            base64.b64decode(letter.original_value, validate=True)
    except (msgspec.DecodeError, binascii.Error) as exc:
        raise ValueError(f"not a dead letter: {exc}") from exc
    return letter
