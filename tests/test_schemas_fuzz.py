"""Property-based and fuzz tests of `decode_event` (hypothesis, derandomized: the same cases on every
run, sized to take seconds).

Whatever the bytes - arbitrary, or a valid event mutated (bytes flipped, cut, hostile fragments
inserted, fields deleted, duplicated or of another type, control characters in every string,
extreme dates) - the decoder returns an `Event` or a `DecodeFailure` with a contract reason, never
raises, never falls back to its "undecodable" catch-all, and says `malformed` exactly when an
independent strict parse does. An accepted event satisfies the clarified rules and survives a
re-encoding; `mic-pipeline validate --json` reports every hostile line and exits 1.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemas_documents import document, dumps, strict_parse

from mic_pipeline.cli import main
from schemas.decode import DecodeFailure, decode_event
from schemas.encode import encode_event
from schemas.events import Event
from schemas.examples import example_events
from schemas.rawchecks import MAX_VALUE_BYTES, UTF8_BOM, nesting_too_deep
from schemas.reasons import DECODE_REASONS, DeadLetterReason

FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=400,
    deadline=timedelta(seconds=5),  # generous (a shared CI machine): the quadratic check took minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ORIGINALS = [encode_event(event) for event in example_events()]
EVENT_TYPES = [event.event_type for event in example_events()]
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
BANNED_IN_STRINGS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
HOSTILE_FRAGMENTS = [
    b"\\u0000", b"\\\\u0000", b"\\", b"\\\\", b'\\"', b'"', b"\x00", b"\x7f", b"\xff", b"\xc3",
    b"\xed\xa0\x80",
    b"\\ud800", b"\\udc00", b"\\ud83d\\ude00", b"{" * 40, b"[" * 33, b"]" * 5, b"}", b"9" * 5000,
    b"1e999999999", b"-0.0000000001", b"NaN", b"Infinity", b"null", b"true", b',"x":1', b',"event_id":"x"',
    b',"payload":{}', b':', b",", b" " * 100, b"\t\r\n", b"\xef\xbb\xbf", "Ё😀".encode(), b"\\b\\f\\u001f",
]


def _expect_decision(raw: bytes) -> Event | DecodeFailure:
    """Decode `raw` and check the decoder's promises, whatever the outcome."""
    result = decode_event(raw, topic=None)
    if isinstance(result, Event):
        _check_event(result)
        return result
    assert isinstance(result, DecodeFailure), result
    assert result.reason in DECODE_REASONS, result
    assert result.detail.startswith("$") and "undecodable" not in result.detail, result
    assert len(result.detail) <= 500 and CONTROL.search(result.detail) is None, result
    for value in (result.event_id, result.event_type):
        assert value is None or (len(value) <= 64 and CONTROL.search(value) is None), result
    expected_malformed = _oracle_malformed(raw)
    assert (result.reason == DeadLetterReason.MALFORMED) == expected_malformed, (raw[:300], result)
    return result


def _oracle_malformed(raw: bytes) -> bool:
    if len(raw) > MAX_VALUE_BYTES or raw.startswith(UTF8_BOM) or nesting_too_deep(raw):
        return True
    try:
        return not isinstance(strict_parse(raw), dict)
    except ValueError:
        return True


def _check_event(event: Event) -> None:
    """The clarified rules hold for an accepted event, and it survives a re-encoding."""
    assert event.occurred_at.tzinfo is not None and 2000 <= event.occurred_at.astimezone(UTC).year <= 2099
    for value in (event.trace_id, *(getattr(event.payload, n) for n in event.payload.__struct_fields__)):
        if isinstance(value, str):
            assert BANNED_IN_STRINGS.search(value) is None, event
        elif hasattr(value, "year") and not hasattr(value, "hour"):
            assert 2000 <= value.year <= 2099, event
    again = decode_event(encode_event(event))
    assert again == event, (event, again)


# --- arbitrary bytes -------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_get_a_decision(raw: bytes) -> None:
    _expect_decision(raw)


JSONISH = st.lists(
    st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\\", b":", b",", b"1", b"e", b"-", b"null", b" ",
                     b'"event_type"', b'"order.placed"', b'"payload"', b"\\u0000", b"a", b"\x7f"]),
    max_size=300,
).map(b"".join)


@FUZZ
@given(JSONISH)
def test_json_like_noise_gets_a_decision(raw: bytes) -> None:
    _expect_decision(raw)


# --- mutated valid events --------------------------------------------------------------------------


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(ORIGINALS)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip" and position < len(raw):
            raw[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "delete" and position < len(raw):
            del raw[position : position + draw(st.integers(1, 8))]
        elif action == "insert":
            raw[position:position] = draw(st.sampled_from(HOSTILE_FRAGMENTS))
        elif action == "truncate":
            del raw[position:]
    return bytes(raw)


@FUZZ
@given(byte_mutations())
def test_mutated_bytes_get_a_decision(raw: bytes) -> None:
    _expect_decision(raw)


SWAPS: list[Any] = [None, True, 0, -1, 1.5, 10**30, "", "x" * 600, [], {}, [1, "a"], {"a": None}]
STRINGS_WITH_CONTROLS = st.text(
    alphabet=st.sampled_from(
        ["a", "Ё", "\t", "\n", "\r", "\x00", "\x08", "\x0b", "\x1b", "\x1f", "\x7f", "\\"]
    ),
    min_size=1,
    max_size=20,
)
EXTREME_TIMES = [
    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "1999-12-31T23:59:59Z",
    "2000-01-01T00:00:00Z", "2099-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "1999-12-31T23:30:00-01:00",
    "2020-02-30T00:00:00Z", "2020-01-01T24:00:00Z", "2020-01-01T00:00:00+24:00", "2020-01-01T00:00:00+0300",
]
EXTREME_DATES = [
    "0001-01-01", "1999-12-31", "2000-01-01", "2099-12-31", "2100-01-01", "9999-12-31", "2020-02-30"
]


@st.composite
def document_mutations(draw: st.DrawFn) -> bytes:
    """A valid event's JSON with one to three structural changes, re-serialised."""
    doc = document(draw(st.sampled_from(EVENT_TYPES)))
    for _ in range(draw(st.integers(1, 3))):
        target = doc if draw(st.booleans()) or not isinstance(doc.get("payload"), dict) else doc["payload"]
        if not isinstance(target, dict) or not target:
            continue
        name = draw(st.sampled_from(sorted(target)))
        action = draw(st.sampled_from(["delete", "swap", "control", "time", "date", "duplicate", "extra"]))
        if action == "delete":
            del target[name]
        elif action == "swap":
            target[name] = draw(st.sampled_from(SWAPS))
        elif action == "control" and isinstance(target[name], str):
            target[name] = draw(STRINGS_WITH_CONTROLS)
        elif action == "time":
            doc["occurred_at"] = draw(st.sampled_from(EXTREME_TIMES))
        elif action == "date" and isinstance(doc.get("payload"), dict):
            for field in ("deadline", "due_date"):
                if field in doc["payload"]:
                    doc["payload"][field] = draw(st.sampled_from(EXTREME_DATES))
        elif action == "extra":
            key = draw(st.sampled_from(["x", "trace_id", "\x1b[31m", "a\x00b"]))
            target[key] = draw(st.sampled_from(SWAPS))
    raw = dumps(doc)
    if draw(st.integers(0, 9)) == 0:  # a duplicated key, written as text
        raw = raw.replace(b'"source":', b'"source":"x","source":', 1)
    return raw


@FUZZ
@given(document_mutations())
def test_mutated_documents_get_a_decision(raw: bytes) -> None:
    _expect_decision(raw)


@settings(derandomize=True, database=None, max_examples=60, deadline=None)
@given(st.sampled_from(ORIGINALS), st.sampled_from(HOSTILE_FRAGMENTS), st.integers(1, 64))
def test_large_hostile_values_get_a_decision(original: bytes, fragment: bytes, times: int) -> None:
    """Fragments repeated into a title, up to and over the size limit."""
    filler = fragment * max(1, (MAX_VALUE_BYTES // max(1, len(fragment))) * times // 64)
    _expect_decision(original.replace(b'"payload":{', b'"payload":{"title":"' + filler + b'",', 1))


def test_every_example_round_trips() -> None:
    for raw in ORIGINALS:
        assert isinstance(_expect_decision(raw), Event)


# --- the validate command --------------------------------------------------------------------------


def _hostile_lines() -> list[bytes]:
    from schemas_hostile import hostile_values

    lines = [raw for raw in hostile_values(4096).values() if b"\n" not in raw]
    lines += [mutated for mutated in _some_mutations() if b"\n" not in mutated and mutated.strip()]
    return lines


def _some_mutations() -> list[bytes]:
    found: list[bytes] = []

    @settings(derandomize=True, database=None, max_examples=150, deadline=None)
    @given(st.one_of(byte_mutations(), document_mutations()))
    def collect(raw: bytes) -> None:
        found.append(raw)

    collect()
    return found


def test_validate_json_reports_every_hostile_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _hostile_lines()
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["validate", "--json", str(path)]) == 1
    out, err = capsys.readouterr()
    assert err == ""
    reports = [json.loads(line) for line in out.splitlines()]
    assert [report["line"] for report in reports] == list(range(1, len(lines) + 1))
    for report, raw in zip(reports, lines, strict=True):
        expected = decode_event(raw)
        assert report["ok"] == isinstance(expected, Event)
        if not report["ok"]:
            assert report["reason"] in {reason.value for reason in DECODE_REASONS}, report
            assert report["detail"].startswith("$") and CONTROL.search(report["detail"]) is None, report
    assert sum(not report["ok"] for report in reports) > len(lines) // 2


def test_validate_text_output_has_no_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(_hostile_lines()) + b"\n")
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert err == "" and CONTROL.search(out.replace("\n", "")) is None
    assert re.search(r"hostile\.jsonl:\d+: malformed: \$", out)


def test_the_installed_command_never_prints_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(_hostile_lines()[:60]) + b"\n")
    done = subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", "validate", "--json", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stderr == ""
    assert len(done.stdout.splitlines()) == 60
