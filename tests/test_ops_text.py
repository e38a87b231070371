"""Event data reaches an operator's terminal escaped: `mic_pipeline.text`, and every command that prints
dead letters, status lines or a child's log lines; HTML renders it as text."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from ops_support import dead_letter, produce, run_cli, use_settings

from mic_pipeline.config import Settings
from mic_pipeline.text import printable, printable_json
from schemas.topics import DEADLETTER_TOPIC

HOSTILE = "\u001b[31mRED\u001b]0;pwned\u0007"
SHOWN = "\\x1b[31mRED\\x1b]0;pwned\\x07"
DANGEROUS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
"""What must never reach the terminal raw (LF aside: the tests count the lines)."""


def test_printable_escapes_controls_and_bidi_and_keeps_every_script() -> None:
    assert printable(HOSTILE) == SHOWN
    assert printable("a\nb\r\tc\x7f\x9b") == "a\\nb\\r\\tc\\x7f\\x9b"
    assert printable("x\u202ey\u2066z\u2028") == "x\\u202ey\\u2066z\\u2028"
    assert printable("ООО «Термолаб» 株式会社 café \\x1b") == "ООО «Термолаб» 株式会社 café \\x1b"
    assert printable("col1\tcol2\x1b", keep_tab=True) == "col1\tcol2\\x1b"


def test_printable_json_escapes_what_json_leaves_raw_and_parses_back_equal() -> None:
    document = {"event_type": HOSTILE + "\u202e\x9b\x7f", "name": "ООО"}
    text = printable_json(orjson.dumps(document).decode())
    assert DANGEROUS.search(text) is None
    assert "\\u202e" in text and "ООО" in text
    assert orjson.loads(text) == document


@pytest.mark.kafka
def test_deadletters_and_status_print_a_hostile_dead_letter_escaped(
    pipeline_topics: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = pipeline_topics
    use_settings(monkeypatch, settings)
    letter = dead_letter(
        settings,
        reason="unknown_event_type",
        original_topic="mic.orders",
        original_value=b'{"event_type": "' + HOSTILE.encode() + b'"}',
        event_id="ev\u202e-1",
        event_type=HOSTILE,
    )
    by_hand = orjson.loads(letter)  # a dead letter whose reason this version does not know
    by_hand["reason"] = "evil\x1b[2J\nreason"
    produce(settings, settings.topic(DEADLETTER_TOPIC), [letter, orjson.dumps(by_hand)])

    code, out, err = run_cli(capsys, "deadletters", "list")
    assert (code, err) == (0, "")
    assert DANGEROUS.search(out) is None, out
    lines = out.splitlines()
    assert len(lines) == 3
    assert f"{SHOWN} ev\\u202e-1  test unknown_event_type" in lines[0]
    assert "evil\\x1b[2J\\nreason" in lines[1]
    assert lines[2] == "2 dead letters matched (evil\\x1b[2J\\nreason 1, unknown_event_type 1); showing 2"

    code, out, _ = run_cli(capsys, "deadletters", "list", "--json")
    assert DANGEROUS.search(out) is None
    parsed = [orjson.loads(line) for line in out.splitlines()]
    assert parsed[0]["event_type"] == HOSTILE and parsed[0]["event_id"] == "ev\u202e-1"

    code, out, _ = run_cli(capsys, "deadletters", "replay", "--dry-run")
    assert DANGEROUS.search(out) is None
    assert "ev\\u202e-1" in out

    code, out, _ = run_cli(capsys, "status")
    assert DANGEROUS.search(out) is None
    assert "  evil\\x1b[2J\\nreason" in out
    code, out, _ = run_cli(capsys, "status", "--json")
    assert DANGEROUS.search(out) is None
    assert orjson.loads(out)["dead_letters_last_hour"]["evil\x1b[2J\nreason"] == 1


def test_deadletters_with_the_broker_down_is_one_line_and_exit_3(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_settings(monkeypatch, settings)
    monkeypatch.setenv("MIC_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    for action in ("list", "replay"):
        code, out, err = run_cli(capsys, "deadletters", action)
        assert (code, out) == (3, "")
        assert err == (
            f"deadletters {action}: broker unreachable at 127.0.0.1:1: "
            "KafkaTimeoutError: Unable to bootstrap from 127.0.0.1:1\n"
        )


def test_html_report_renders_data_as_text() -> None:
    from mic_pipeline.ops.report import _table, svg_bar_chart

    attack = '<img src=x onerror=alert(1)>"\'&'
    chart = svg_bar_chart([(attack, 3.0)], attack)
    table = _table([attack], [{attack: attack}])
    for html in (chart, table):
        assert "<img" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;" in html


def test_the_web_page_builds_its_dom_from_text_only() -> None:
    page = (Path(__file__).resolve().parent.parent / "mic_pipeline/ops/static/index.html").read_text()
    script = page[page.index("<script>") : page.index("</script>")]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in script, sink
    assert "textContent" in script
