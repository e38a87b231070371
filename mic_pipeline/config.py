"""Configuration from environment variables, with defaults for local use, validated at start.

Every process of the pipeline reads its settings here and nowhere else:

| variable | default | meaning |
|---|---|---|
| `MIC_KAFKA_BOOTSTRAP` | `127.0.0.1:9092` | Kafka bootstrap servers: `host:port[,host:port...]` |
| `MIC_DATABASE_URL` | `sqlite:///<warehouse>/warehouse.db` | SQLAlchemy URL of the SQL warehouse |
| `MIC_WAREHOUSE_DIR` | `./warehouse` | Parquet dataset root and default SQLite file |
| `MIC_TOPIC_PREFIX` | empty | prefix of every topic name (isolates test runs) |
| `MIC_PARTITIONS` | `6` | partitions per topic created by `mic-pipeline topics create` |
| `MIC_STATE_DIR` | `./.mic` | local state: broker data and logs, pid files, stream tables |
| `MIC_CACHE_DIR` | `~/.cache/mic-pipeline` | downloaded artifacts (the Kafka broker's jars) |
| `MIC_BIND_HOST` | `127.0.0.1` | address the HTTP endpoints (metrics, health, aggregates) listen on |
| `MIC_HEALTH_URLS` | empty | components' readiness URLs `status` and `web` read: `[name=]URL,...` |
| `MIC_KAFKA_SECURITY_PROTOCOL` | `PLAINTEXT` | with `MIC_KAFKA_SASL_*`, `MIC_KAFKA_SSL_*`: `kafka_settings` |

`Settings.from_env` checks every value and raises `ConfigError` naming the variable, the value and
what is wrong with it (`MIC_KAFKA_BOOTSTRAP='127.0.0.1:notaport': port must be a number 1-65535`);
`mic-pipeline` prints that one line and exits 2 whatever the subcommand. It also checks the form of
the variables other readers interpret, so that no subcommand meets them unchecked:
`MIC_STREAMS_*` (meaning in `streams/settings.py`) and `MIC_STREAMS_URL` (the web page). The
`MIC_STATUS_*` thresholds are checked by their reader, `mic_pipeline.ops.verdict.Thresholds.from_env`,
with the same error. The `env_*` readers below are for any such reader.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mic_pipeline.kafka_settings import KafkaSecurity, SecuritySettingError, parse_kafka_security


class ConfigError(Exception):
    """A configuration variable holds a value the pipeline cannot use."""

    def __init__(self, variable: str, value: str, problem: str) -> None:
        self.variable = variable
        self.value = value
        self.problem = problem
        super().__init__(f"{variable}={value!r}: {problem}")


@dataclass(frozen=True)
class HealthEndpoint:
    """A component's readiness URL; `name` None means the component names itself in its answer."""

    url: str
    name: str | None = None

    def __str__(self) -> str:
        return self.url if self.name is None else f"{self.name}={self.url}"


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one pipeline process."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    warehouse_dir: Path = Path("warehouse")
    database_url: str = ""
    topic_prefix: str = ""
    partitions: int = 6
    state_dir: Path = Path(".mic")
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "mic-pipeline")
    bind_host: str = "127.0.0.1"
    health_urls: tuple[HealthEndpoint, ...] = ()
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    """How the Kafka clients authenticate and encrypt; `mic_pipeline.kafka_clients` applies it."""

    def __post_init__(self) -> None:
        if not self.database_url:
            url = f"sqlite:///{(self.warehouse_dir / 'warehouse.db').resolve()}"
            object.__setattr__(self, "database_url", url)
        if self.partitions < 1:
            raise ValueError(f"MIC_PARTITIONS must be >= 1, got {self.partitions}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check the settings from `environ` (default: the process environment); raises
        `ConfigError` for the first variable that is wrong."""
        env: Mapping[str, str] = os.environ if environ is None else environ
        defaults = cls()
        check_component_variables(env)
        database_url = env.get("MIC_DATABASE_URL", "")
        if database_url:
            check_database_url("MIC_DATABASE_URL", database_url)
        try:
            kafka_security = parse_kafka_security(env)
        except SecuritySettingError as exc:
            raise ConfigError(exc.variable, exc.value, exc.problem) from None
        return cls(
            kafka_bootstrap=parse_bootstrap(
                "MIC_KAFKA_BOOTSTRAP", env.get("MIC_KAFKA_BOOTSTRAP", defaults.kafka_bootstrap)
            ),
            warehouse_dir=env_directory(env, "MIC_WAREHOUSE_DIR", defaults.warehouse_dir),
            database_url=database_url,
            topic_prefix=parse_topic_prefix("MIC_TOPIC_PREFIX", env.get("MIC_TOPIC_PREFIX", "")),
            partitions=int(env_number(env, "MIC_PARTITIONS", defaults.partitions, minimum=1, integer=True)),
            state_dir=env_directory(env, "MIC_STATE_DIR", defaults.state_dir),
            cache_dir=env_directory(env, "MIC_CACHE_DIR", defaults.cache_dir),
            bind_host=parse_host("MIC_BIND_HOST", env.get("MIC_BIND_HOST", defaults.bind_host)),
            health_urls=parse_health_urls("MIC_HEALTH_URLS", env.get("MIC_HEALTH_URLS", "")),
            kafka_security=kafka_security,
        )

    def topic(self, name: str) -> str:
        """The physical topic name for a contract topic name (see `schemas.topics`)."""
        return f"{self.topic_prefix}{name}"


# -- readers of one variable ----------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
_TOPIC_CHARACTERS = re.compile(r"^[A-Za-z0-9._-]*$")
_COMPONENT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_TOPIC_PREFIX = 200
"""Kafka allows 249 characters per topic name; the longest contract or internal suffix needs ~40."""


def _is_host(text: str) -> bool:
    if _HOSTNAME.match(text):
        return True
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_host(variable: str, value: str) -> str:
    """A host name or an IP address."""
    if not _is_host(value):
        raise ConfigError(variable, value, "not a host name or IP address")
    return value


def parse_port(variable: str, value: str, text: str | None = None) -> int:
    """A TCP port 1-65535 from `text` (default: `value`); `value` is what the error shows."""
    port_text = value if text is None else text
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(variable, value, "port must be a number 1-65535")
    return int(port_text)


def parse_bootstrap(variable: str, value: str) -> str:
    """Kafka bootstrap servers: `host:port` entries separated by commas (IPv6 as `[addr]:port`);
    returned with the blanks around entries removed."""
    entries = [entry.strip() for entry in value.split(",")]
    if not value.strip() or any(not entry for entry in entries):
        raise ConfigError(variable, value, "expected host:port[,host:port...] with no empty entry")
    for entry in entries:
        host, colon, port = entry.rpartition(":")
        if not colon:
            raise ConfigError(variable, value, f"{entry!r} has no port (expected host:port)")
        parse_port(variable, value, port)
        bracketed = host.startswith("[") and host.endswith("]")
        bare = host[1:-1] if bracketed else host
        if bracketed != (":" in bare) or not _is_host(bare):
            raise ConfigError(
                variable, value, f"{host!r} is not a host name or IP address (IPv6 as [address]:port)"
            )
    return ",".join(entries)


def parse_topic_prefix(variable: str, value: str) -> str:
    """A topic name prefix: Kafka's topic characters (letters, digits, `.`, `_`, `-`)."""
    if not _TOPIC_CHARACTERS.match(value):
        raise ConfigError(variable, value, "only letters, digits, '.', '_' and '-' may appear in topic names")
    if len(value) > MAX_TOPIC_PREFIX:
        raise ConfigError(variable, value, f"longer than {MAX_TOPIC_PREFIX} characters")
    return value


def hide_password(url: str) -> str:
    """`url` with the password of its `user:password@` part replaced by `***`."""
    return re.sub(r"^([^:/?#]+://[^:/?#@]*:)[^@/?#]*@", r"\1***@", url)


def check_database_url(variable: str, value: str) -> None:
    """A URL SQLAlchemy parses (`make_url`) and has a dialect for. The error shows no password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = hide_password(value)
    try:
        url = make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(variable, shown, f"not a database URL ({exc})") from exc
    try:
        url.get_dialect()
    except NoSuchModuleError as exc:
        raise ConfigError(
            variable, shown, f"unknown database dialect {url.drivername!r} (e.g. sqlite, postgresql+psycopg)"
        ) from exc


def env_directory(env: Mapping[str, str], variable: str, default: Path) -> Path:
    """A directory: not an existing file, and below no existing file (it is created when needed)."""
    text = env.get(variable)
    if text is None:
        return default
    if not text.strip():
        raise ConfigError(variable, text, "must name a directory")
    path = Path(text).expanduser()
    existing = next((p for p in (path, *path.absolute().parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == path else f"is below {existing}, which is not a directory"
        raise ConfigError(variable, text, f"not a directory: {where}")
    return path


def env_number(
    env: Mapping[str, str],
    variable: str,
    default: float,
    *,
    minimum: float | None = None,
    above: float | None = None,
    integer: bool = False,
) -> float:
    """A number (an integer when `integer`) at least `minimum` / greater than `above`."""
    text = env.get(variable)
    if text is None:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ConfigError(variable, text, "must be an integer" if integer else "must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(variable, text, "must be a finite number")
    if minimum is not None and value < minimum:
        raise ConfigError(variable, text, f"must be >= {minimum:g}")
    if above is not None and value <= above:
        raise ConfigError(variable, text, f"must be > {above:g}")
    return value


def parse_http_url(variable: str, value: str, text: str | None = None) -> str:
    """An `http://` or `https://` URL with a host (and a valid port when given), from `text`
    (default: `value`, the variable's whole value, which the error shows)."""
    url = value if text is None else text
    which = "" if text is None else f"{url!r}: "
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(variable, value, f"{which}port must be a number 1-65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(variable, value, f"{which}not an http:// or https:// URL with a host")
    if port == 0:
        raise ConfigError(variable, value, f"{which}port must be a number 1-65535")
    return url


def parse_health_urls(variable: str, value: str) -> tuple[HealthEndpoint, ...]:
    """`[name=]URL` entries separated by commas (blank: none)."""
    if not value.strip():
        return ()
    endpoints = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            raise ConfigError(variable, value, "empty entry (expected [name=]URL,...)")
        name, equals, url = entry.partition("=")
        if not equals or "://" in name:
            name, url = "", entry
        elif not _COMPONENT_NAME.match(name):
            raise ConfigError(variable, value, f"component name {name!r}: use letters, digits, '.', '_', '-'")
        endpoints.append(HealthEndpoint(parse_http_url(variable, value, url), name or None))
    return tuple(endpoints)


STREAM_GUARANTEES = ("at_least_once",)
"""The stream worker's processing guarantees (`streams.settings.GUARANTEES`)."""


def check_component_variables(env: Mapping[str, str]) -> None:
    """The form of the variables read by other components' settings (see the module docstring)."""
    if "MIC_STREAMS_WEB_PORT" in env:
        parse_port("MIC_STREAMS_WEB_PORT", env["MIC_STREAMS_WEB_PORT"])
    env_number(env, "MIC_STREAMS_MEMBER_WAIT_S", 0, minimum=0)
    env_number(env, "MIC_STREAMS_RECHECK_S", 1, above=0)
    env_number(env, "MIC_STREAMS_DEDUPE_DAYS", 1, minimum=1, integer=True)
    env_number(env, "MIC_STREAMS_SNAPSHOT_S", 1, above=0)
    env_number(env, "MIC_STREAMS_COMMIT_S", 1, above=0)
    guarantee = env.get("MIC_STREAMS_GUARANTEE")
    if guarantee is not None and guarantee not in STREAM_GUARANTEES:
        choices = ", ".join(STREAM_GUARANTEES)
        raise ConfigError("MIC_STREAMS_GUARANTEE", guarantee, f"must be one of {choices}")
    app_id = env.get("MIC_STREAMS_APP_ID")
    if app_id:
        parse_topic_prefix("MIC_STREAMS_APP_ID", app_id)
    streams_url = env.get("MIC_STREAMS_URL")
    if streams_url:
        parse_http_url("MIC_STREAMS_URL", streams_url)
