"""Dead-letter parsing, selection and replay decisions, without Kafka."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from mic_pipeline.ops.deadletters import (
    REPEAT_SKIP,
    DeadLetterFilter,
    InvalidDeadLetter,
    count_by_reason,
    decide_replay,
    decide_replays,
    format_letter,
    parse_dead_letter,
    parse_since,
    physical_topics,
    summarize_decisions,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def dead_letter_json(**overrides: object) -> bytes:
    document: dict[str, object] = {
        "reason": "unknown_company",
        "detail": "company 7701234567 is not an active member",
        "original_topic": "p.mic.orders",
        "original_partition": 2,
        "original_offset": 41,
        "original_key": "7701234567",
        "original_value": '{"event_id": "e1"}',
        "event_id": "e1",
        "event_type": "order.placed",
        "failed_at": "2026-03-01T11:30:00Z",
    }
    document.update(overrides)
    return orjson.dumps(document)


def test_parses_text_value_and_key() -> None:
    letter = parse_dead_letter(dead_letter_json(), (0, 5))
    assert letter.reason == "unknown_company"
    assert letter.original_value == b'{"event_id": "e1"}'
    assert letter.original_key == b"7701234567"
    assert (letter.original_partition, letter.original_offset) == (2, 41)
    assert letter.failed_at == datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
    assert letter.position == (0, 5)


def test_parses_base64_value_back_to_the_original_bytes() -> None:
    raw = b"\xff\xfe not utf-8 \x00"
    letter = parse_dead_letter(
        dead_letter_json(
            reason="malformed",
            original_value=base64.b64encode(raw).decode(),
            original_encoding="base64",
            original_key=None,
            event_id=None,
        ),
        (1, 0),
    )
    assert letter.original_value == raw
    assert letter.original_key is None
    as_json = letter.to_json()
    assert as_json["original_encoding"] == "base64"
    assert base64.b64decode(as_json["original_value"]) == raw


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (orjson.dumps({"detail": "x"}), "reason or original_topic missing"),
        (dead_letter_json(original_encoding="base64", original_value="%%%"), "not valid base64"),
        (dead_letter_json(failed_at="yesterday"), "failed_at is not a timestamp"),
    ],
)
def test_rejects_records_that_are_not_dead_letters(value: bytes, message: str) -> None:
    with pytest.raises(InvalidDeadLetter, match=message):
        parse_dead_letter(value, (0, 0))


def test_since_accepts_durations_and_timestamps() -> None:
    assert parse_since("15m", NOW) == NOW - timedelta(minutes=15)
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-03-01T10:00:00+03:00", NOW) == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("last tuesday", NOW)


def test_filter_by_reason_event_id_and_since() -> None:
    letter = parse_dead_letter(dead_letter_json(), (0, 0))
    assert DeadLetterFilter().matches(letter)
    assert DeadLetterFilter(reasons=frozenset({"unknown_company"})).matches(letter)
    assert not DeadLetterFilter(reasons=frozenset({"malformed"})).matches(letter)
    assert DeadLetterFilter(event_ids=frozenset({"e1", "e2"})).matches(letter)
    assert not DeadLetterFilter(event_ids=frozenset({"e2"})).matches(letter)
    assert DeadLetterFilter(since=NOW - timedelta(hours=1)).matches(letter)
    assert not DeadLetterFilter(since=NOW - timedelta(minutes=10)).matches(letter)


def test_counts_per_reason() -> None:
    letters = [
        parse_dead_letter(dead_letter_json(reason=r), (0, i))
        for i, r in enumerate(["malformed", "unknown_company", "malformed"])
    ]
    assert count_by_reason(letters) == {"malformed": 2, "unknown_company": 1}


def test_original_topic_recorded_with_or_without_prefix() -> None:
    assert physical_topics("p.mic.orders", "p.") == ("p.mic.orders", "mic.orders")
    assert physical_topics("mic.orders", "p.") == ("p.mic.orders", "mic.orders")
    assert physical_topics("mic.orders", "") == ("mic.orders", "mic.orders")


def test_replay_decisions_validate_unless_forced() -> None:
    def validator(raw: bytes, topic: str) -> str | None:
        assert topic == "mic.orders"
        return None if raw.startswith(b"{") else "malformed"

    good = parse_dead_letter(dead_letter_json(), (0, 0))
    bad = parse_dead_letter(dead_letter_json(reason="malformed", original_value="garbage"), (0, 1))
    sink_failure = parse_dead_letter(dead_letter_json(original_topic="p.mic.orders.enriched"), (0, 2))
    decisions = [decide_replay(letter, "p.", validator, force=False) for letter in (good, bad, sink_failure)]
    assert [(d.target_topic, d.skip_reason) for d in decisions] == [
        ("p.mic.orders", None),
        ("p.mic.orders", "still invalid: malformed"),
        ("p.mic.orders.enriched", "not a family input topic"),
    ]
    assert summarize_decisions(decisions) == {
        "selected": 3,
        "replayed": 1,
        "skipped": {"not a family input topic": 1, "still invalid: malformed": 1},
    }
    assert decide_replay(bad, "p.", validator, force=True).skip_reason is None


def test_reads_what_the_schemas_builder_writes_and_never_replays_truncated_values() -> None:
    from schemas.deadletter import build_dead_letter
    from schemas.reasons import DeadLetterReason

    raw = b"\x00\xff" * 40
    built = build_dead_letter(
        reason=DeadLetterReason.MALFORMED,
        detail="not UTF-8",
        original_topic="p.mic.orders",
        original_partition=1,
        original_offset=9,
        original_key=b"\xfe",
        original_value=raw,
        event_id=None,
        event_type=None,
        failed_at=NOW,
    )
    letter = parse_dead_letter(built, (0, 3))
    assert (letter.original_value, letter.original_key, letter.failed_at) == (raw, b"\xfe", NOW)
    assert not letter.truncated
    cut = parse_dead_letter(
        build_dead_letter(
            reason=DeadLetterReason.MALFORMED,
            detail="too large",
            original_topic="p.mic.orders",
            original_partition=1,
            original_offset=10,
            original_key=None,
            original_value=b"x" * 100,
            event_id=None,
            event_type=None,
            failed_at=NOW,
            max_value_bytes=10,
        ),
        (0, 4),
    )
    assert cut.truncated
    assert (
        decide_replay(cut, "p.", lambda raw, topic: None, force=True).skip_reason
        == "original value truncated"
    )


def test_an_event_is_replayed_once_however_many_dead_letters_it_has() -> None:
    first = parse_dead_letter(dead_letter_json(), (0, 0))
    again = parse_dead_letter(dead_letter_json(detail="decision repeated after a replay"), (1, 9))
    other = parse_dead_letter(dead_letter_json(event_id="e2"), (0, 1))
    no_id = parse_dead_letter(dead_letter_json(event_id=None, reason="malformed"), (0, 2))
    no_id_again = parse_dead_letter(dead_letter_json(event_id=None, reason="malformed"), (0, 3))
    decisions = decide_replays(
        [first, again, other, no_id, no_id_again], "p.", lambda raw, topic: None, False
    )
    assert [d.skip_reason for d in decisions] == [None, REPEAT_SKIP, None, None, REPEAT_SKIP]


def test_format_letter_shows_reason_origin_and_event() -> None:
    line = format_letter(parse_dead_letter(dead_letter_json(), (0, 0)))
    assert line.startswith("2026-03-01T11:30:00Z  unknown_company")
    assert "p.mic.orders[2]@41" in line
    assert "order.placed e1" in line
