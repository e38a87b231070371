"""Configuration is checked at start: every `MIC_*` variable's value, one clear line naming it, exit 2,
for every kind of subcommand (run as the real `mic-pipeline` command: no traceback may reach stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mic_pipeline.config import ConfigError, HealthEndpoint, Settings, hide_password

NOT_A_PORT = "127.0.0.1:notaport"
EXPECTED_LINE = (
    "mic-pipeline: configuration error: "
    "MIC_KAFKA_BOOTSTRAP='127.0.0.1:notaport': port must be a number 1-65535"
)


def problem(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(environ)
    return str(error.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (NOT_A_PORT, "port must be a number 1-65535"),
        ("kafka:0", "port must be a number 1-65535"),
        ("kafka:65536", "port must be a number 1-65535"),
        ("kafka", "'kafka' has no port (expected host:port)"),
        ("a:9092,,b:9092", "expected host:port[,host:port...] with no empty entry"),
        ("", "expected host:port[,host:port...] with no empty entry"),
        ("bad host:9092", "'bad host' is not a host name or IP address (IPv6 as [address]:port)"),
        ("::1:9092", "'::1' is not a host name or IP address (IPv6 as [address]:port)"),
    ],
)
def test_bad_bootstrap_servers_are_named_with_the_problem(value: str, message: str) -> None:
    assert problem({"MIC_KAFKA_BOOTSTRAP": value}) == f"MIC_KAFKA_BOOTSTRAP={value!r}: {message}"


def test_good_bootstrap_servers_are_kept_without_blanks() -> None:
    settings = Settings.from_env({"MIC_KAFKA_BOOTSTRAP": " kafka:9092, [::1]:29092 ,10.0.0.7:1"})
    assert settings.kafka_bootstrap == "kafka:9092,[::1]:29092,10.0.0.7:1"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MIC_PARTITIONS", "six", "must be an integer"),
        ("MIC_PARTITIONS", "0", "must be >= 1"),
        ("MIC_TOPIC_PREFIX", "run 1/", "only letters, digits, '.', '_' and '-' may appear in topic names"),
        ("MIC_BIND_HOST", "0.0.0.0:80", "not a host name or IP address"),
        ("MIC_DATABASE_URL", "warehouse.db", "not a database URL (Could not parse SQLAlchemy URL"),
        ("MIC_DATABASE_URL", "oracle2://x/y", "unknown database dialect 'oracle2'"),
        ("MIC_HEALTH_URLS", "sink-sql=ftp://x", "'ftp://x': not an http:// or https:// URL with a host"),
        ("MIC_HEALTH_URLS", "http://h:1/,,http://h:2/", "empty entry (expected [name=]URL,...)"),
        ("MIC_HEALTH_URLS", "http://h:99999/", "'http://h:99999/': port must be a number 1-65535"),
        ("MIC_HEALTH_URLS", "a b=http://h/", "component name 'a b': use letters, digits, '.', '_', '-'"),
        ("MIC_STREAMS_WEB_PORT", "66066", "port must be a number 1-65535"),
        ("MIC_STREAMS_MEMBER_WAIT_S", "five", "must be a number"),
        ("MIC_STREAMS_RECHECK_S", "0", "must be > 0"),
        ("MIC_STREAMS_DEDUPE_DAYS", "1.5", "must be an integer"),
        ("MIC_STREAMS_GUARANTEE", "exactly_once", "must be one of at_least_once"),
        ("MIC_STREAMS_COMMIT_S", "0", "must be > 0"),
        ("MIC_STREAMS_URL", "streams:6066/aggregates", "not an http:// or https:// URL with a host"),
    ],
)
def test_each_variable_is_checked(variable: str, value: str, message: str) -> None:
    text = problem({variable: value})
    assert text.startswith(f"{variable}={value!r}: {message}"), text


def test_directories_must_not_be_files(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert problem({"MIC_WAREHOUSE_DIR": str(a_file)}) == (
        f"MIC_WAREHOUSE_DIR={str(a_file)!r}: not a directory: is a file"
    )
    below = a_file / "state"
    assert problem({"MIC_STATE_DIR": str(below)}) == (
        f"MIC_STATE_DIR={str(below)!r}: not a directory: is below {a_file}, which is not a directory"
    )
    fresh = tmp_path / "new" / "cache"
    assert Settings.from_env({"MIC_CACHE_DIR": str(fresh)}).cache_dir == fresh


def test_a_database_url_error_shows_no_password() -> None:
    text = problem({"MIC_DATABASE_URL": "postgresql+psycopg://mic:s3cret@db:notaport/mic"})
    assert "s3cret" not in text
    assert text.startswith(
        "MIC_DATABASE_URL='postgresql+psycopg://mic:***@db:notaport/mic': not a database URL"
    )
    assert hide_password("sqlite:///x.db") == "sqlite:///x.db"


def test_health_urls_are_named_or_not() -> None:
    settings = Settings.from_env(
        {"MIC_HEALTH_URLS": "sink-sql=http://sink-sql:9101/health/ready, http://10.0.0.1:9102/health/ready"}
    )
    assert settings.health_urls == (
        HealthEndpoint("http://sink-sql:9101/health/ready", "sink-sql"),
        HealthEndpoint("http://10.0.0.1:9102/health/ready", None),
    )
    assert Settings.from_env({"MIC_HEALTH_URLS": " "}).health_urls == ()


def test_the_defaults_and_a_complete_valid_environment_pass(tmp_path: Path) -> None:
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env(
        {
            "MIC_KAFKA_BOOTSTRAP": "kafka:9092",
            "MIC_DATABASE_URL": "postgresql+psycopg://mic:mic@postgres:5432/mic",
            "MIC_WAREHOUSE_DIR": str(tmp_path / "w"),
            "MIC_TOPIC_PREFIX": "run-1.",
            "MIC_PARTITIONS": "3",
            "MIC_STATE_DIR": str(tmp_path / "s"),
            "MIC_BIND_HOST": "0.0.0.0",
            "MIC_STREAMS_WEB_PORT": "6066",
            "MIC_STREAMS_GUARANTEE": "at_least_once",
            "MIC_STREAMS_URL": "http://streams:6066/aggregates",
        }
    )
    assert (settings.partitions, settings.topic_prefix, settings.bind_host) == (3, "run-1.", "0.0.0.0")


def mic_pipeline(*arguments: str, environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", *arguments],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


COMMANDS = [
    ("publish", "events.jsonl"),
    ("simulate", "--rate", "10", "--duration", "1"),
    ("streams",),
    ("sink", "sql"),
    ("status",),
    ("drain", "--timeout", "1"),
    ("deadletters", "list"),
    ("web", "--port", "0"),
    ("run", "--ready-timeout", "5"),
    ("report", "--out", "report"),
    ("topics", "create"),
    ("kafka", "status"),
]


def test_every_subcommand_reports_a_bad_variable_in_one_line_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text("{}\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MIC_")}
    environ |= {"MIC_KAFKA_BOOTSTRAP": NOT_A_PORT, "MIC_STATE_DIR": str(tmp_path / "state")}
    for command in COMMANDS:
        result = mic_pipeline(*command, environ=environ, cwd=tmp_path)
        assert (result.returncode, result.stderr, result.stdout) == (2, EXPECTED_LINE + "\n", ""), command
    environ["MIC_KAFKA_BOOTSTRAP"] = "127.0.0.1:9092"
    environ["MIC_PARTITIONS"] = "many"
    result = mic_pipeline("sink", "parquet", environ=environ, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "mic-pipeline: configuration error: MIC_PARTITIONS='many': must be an integer\n",
    )
    environ["MIC_PARTITIONS"] = "6"
    environ["MIC_STATUS_MAX_LAG_SECONDS"] = "soon"
    result = mic_pipeline("status", environ=environ, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "mic-pipeline: configuration error: MIC_STATUS_MAX_LAG_SECONDS='soon': must be a number or 'off'\n",
    )
