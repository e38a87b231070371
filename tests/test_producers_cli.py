"""`mic-pipeline validate` and the error paths of `publish` / `simulate` that need no broker."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pytest

from mic_pipeline.cli import main
from producers.ground_truth import VALID
from producers.simulator import SimulationConfig, generate

UNREACHABLE = "127.0.0.1:1"


def _valid_lines(count: int) -> list[bytes]:
    records = generate(SimulationConfig(seed=21, scale=0.02))
    return [r.value for r in itertools.islice(records, count) if r.truth.expected == VALID]


def _write(path: Path, lines: list[bytes], terminator: bytes = b"\n") -> Path:
    path.write_bytes(b"".join(line + terminator for line in lines))
    return path


@pytest.fixture
def mixed_file(tmp_path: Path) -> Path:
    good = _valid_lines(3)
    schema_bad = json.loads(good[1])
    schema_bad["company_id"] = "7700000000"
    lines = [good[0], b"", b"{not json", json.dumps(schema_bad).encode(), b"\xff\xfe{}", good[2], b"   "]
    return _write(tmp_path / "mixed.jsonl", lines)


def test_validate_accepts_a_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "good.jsonl", _valid_lines(50))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("0 invalid")


def test_validate_json_is_exactly_one_object_per_line(
    mixed_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(mixed_file), "--json"]) == 1
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [list(o) for o in objects] == [["line", "ok", "reason", "detail"]] * 7
    assert [o["line"] for o in objects] == list(range(1, 8))
    assert [o["ok"] for o in objects] == [True, False, False, False, False, True, False]
    assert [o["reason"] for o in objects] == [
        None,
        "malformed",
        "malformed",
        "schema_violation",
        "malformed",
        None,
        "malformed",
    ]
    assert objects[0]["detail"] == ""
    assert "blank line" in objects[1]["detail"]
    assert "company_id" in objects[3]["detail"]
    assert all(isinstance(o["detail"], str) for o in objects)


def test_validate_text_names_file_and_line(mixed_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(mixed_file)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{mixed_file}:2: malformed: ")
    assert lines[2].startswith(f"{mixed_file}:4: schema_violation: ")
    assert lines[-1] == f"{mixed_file}: 7 lines, 2 valid, 5 invalid"


def test_validate_handles_crlf_and_a_missing_final_newline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _valid_lines(4)
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"\r\n".join(lines))
    assert main(["validate", str(path), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(lines)


def test_validate_empty_file_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "empty.jsonl", [])
    assert main(["validate", str(path), "--json"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("command", ["validate", "publish"])
def test_missing_file_is_a_clear_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main([command, str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "no such file" in err


def test_directory_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path)]) == 2
    assert f"cannot read {tmp_path}: not a file" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "secret.jsonl", _valid_lines(3))
    path.chmod(0)
    assert main(["validate", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags", [["--raw"], ["--topic", "mic.orders"], ["--raw", "--topic", "mic.orders", "--strict"]]
)
def test_publish_flag_combinations(
    flags: list[str], mixed_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", str(mixed_file), *flags]) == 2
    assert "--raw" in capsys.readouterr().err


def test_publish_strict_rejects_before_connecting(
    mixed_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIC_KAFKA_BOOTSTRAP", UNREACHABLE)
    started = time.monotonic()
    assert main(["publish", str(mixed_file), "--strict", "--timeout", "5"]) == 1
    assert time.monotonic() - started < 2
    captured = capsys.readouterr()
    assert f"{mixed_file}:3: malformed" in captured.err
    assert "nothing published" in captured.out


@pytest.mark.parametrize("command", [["publish", "FILE"], ["simulate", "--rate", "10", "--duration", "1"]])
def test_unreachable_broker_fails_fast(
    command: list[str], mixed_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIC_KAFKA_BOOTSTRAP", UNREACHABLE)
    argv = [str(mixed_file) if part == "FILE" else part for part in command]
    started = time.monotonic()
    assert main([*argv, "--timeout", "1"]) == 3
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert err == (
        f"mic-pipeline {command[0]}: error: cannot reach Kafka at {UNREACHABLE}: "
        f"KafkaTimeoutError: Unable to bootstrap from ['{UNREACHABLE}']\n"
    )


@pytest.mark.parametrize("command", [["publish", "FILE"], ["simulate", "--rate", "10", "--duration", "1"]])
def test_a_well_formed_but_dead_broker_is_one_line_and_exit_3_from_the_real_command(
    command: list[str], mixed_file: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    argv = [str(mixed_file) if part == "FILE" else part for part in command]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MIC_")}
    environ["MIC_KAFKA_BOOTSTRAP"] = "nosuchhost.invalid:9092"
    result = subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", *argv, "--timeout", "1"],
        env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3
    assert len(result.stderr.splitlines()) == 1, result.stderr
    expected = f"mic-pipeline {command[0]}: error: cannot reach Kafka at nosuchhost.invalid:9092"
    assert result.stderr.startswith(expected)


def test_a_malformed_bootstrap_is_a_configuration_error(
    mixed_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIC_KAFKA_BOOTSTRAP", "127.0.0.1:notaport")
    assert main(["publish", str(mixed_file)]) == 2
    assert capsys.readouterr().err == (
        "mic-pipeline: configuration error: MIC_KAFKA_BOOTSTRAP='127.0.0.1:notaport': "
        "port must be a number 1-65535\n"
    )


def test_invalid_lines_are_reported_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from producers.cli import _describe
    from producers.jsonl import LineVerdict
    from schemas.reasons import DeadLetterReason

    hostile = "\u001b[31mRED\u001b]0;pwned\u0007\u202e"
    document = json.loads(_valid_lines(1)[0])
    document[hostile] = 1
    path = _write(tmp_path / "hostile.jsonl", [json.dumps(document, ensure_ascii=False).encode()])
    monkeypatch.setenv("MIC_KAFKA_BOOTSTRAP", UNREACHABLE)
    assert main(["publish", str(path), "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:1: schema_violation: $.") and err.endswith(": unknown field\n")
    assert not set(err) & {"\x1b", "\x07", "\u202e"}
    # whatever a decoder's detail quotes, the line printed for it is escaped
    verdict = LineVerdict(3, b"", None, DeadLetterReason.SCHEMA_VIOLATION, f"$.{hostile}\nx: unknown field")
    assert _describe(path, verdict) == (
        f"{path}:3: schema_violation: $.\\x1b[31mRED\\x1b]0;pwned\\x07\\u202e\\nx: unknown field"
    )


@pytest.mark.parametrize("flags", [["--invalid-fraction", "1.5"], ["--scale", "0"], ["--duration", "0"]])
def test_simulate_rejects_bad_arguments(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    base = {"--rate": "10", "--duration": "1"}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        base[flag] = value
    assert main(["simulate", *itertools.chain.from_iterable(base.items())]) == 2
    assert "mic-pipeline simulate: error" in capsys.readouterr().err
