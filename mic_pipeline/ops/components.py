"""The components' readiness as `status` and `web` see it: which URLs to ask, and what they answered.

Each long-running component (the stream worker, each sink) serves `GET /health/ready` from a
`mic_pipeline.health.Health`: 200 when ready, 503 with `{"component", "status", "reasons", "since",
"last_progress"}` when not. `fetch_health` turns one answer into a `ComponentHealth`; an endpoint
that does not answer, or answers anything else, is itself the reason
(`sink-sql: health endpoint unreachable (...)`).

Which endpoints, first match wins:

1. `--health-url [NAME=]URL` flags of `status` / `web`;
2. `MIC_HEALTH_URLS` (`Settings.health_urls`), e.g. in docker-compose;
3. the run file of a live `mic-pipeline run` in the same `MIC_STATE_DIR` (`<state>/run.json`,
   written by `run` with its children's URLs and removed when it stops), so `status` and `web`
   started beside `run` watch its children without being told;
4. none: `status` judges Kafka and the warehouse only, as before.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mic_pipeline.config import HealthEndpoint, Settings, parse_health_urls
from mic_pipeline.ops.verdict import ComponentHealth

HEALTH_TIMEOUT_S = 2.0
MAX_HEALTH_BODY = 64 * 1024
RUN_FILE = "run.json"


class RunFileError(RuntimeError):
    """The run file exists but is not one `mic-pipeline run` wrote."""


def fetch_health(endpoint: HealthEndpoint, timeout_s: float = HEALTH_TIMEOUT_S) -> ComponentHealth:
    """Ask one readiness endpoint. Never raises for what the endpoint does: that is the answer."""
    fallback = endpoint.name or _host_port(endpoint.url)
    try:
        with urllib.request.urlopen(endpoint.url, timeout=timeout_s) as response:
            status, body = response.status, response.read(MAX_HEALTH_BODY)
    except urllib.error.HTTPError as answer:
        status, body = answer.code, answer.read(MAX_HEALTH_BODY)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        return ComponentHealth(
            fallback, endpoint.url, False, error=f"health endpoint unreachable ({endpoint.url}: {reason})"
        )
    if status not in (200, 503):
        return ComponentHealth(
            fallback, endpoint.url, False, error=f"health endpoint answered HTTP {status} ({endpoint.url})"
        )
    document = _json_object(body)
    name = endpoint.name or _text(document.get("component")) or fallback
    if status == 200:
        return ComponentHealth(
            name, endpoint.url, True, since=_seconds(document, "since"),
            last_progress=_seconds(document, "last_progress"),
        )  # fmt: skip
    reasons = document.get("reasons")
    return ComponentHealth(
        name,
        endpoint.url,
        False,
        reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else ("HTTP 503",),
        since=_seconds(document, "since"),
        last_progress=_seconds(document, "last_progress"),
    )


def collect_components(
    endpoints: Sequence[HealthEndpoint], timeout_s: float = HEALTH_TIMEOUT_S
) -> tuple[ComponentHealth, ...]:
    """Ask every endpoint at once; answers in the order of `endpoints`."""
    if not endpoints:
        return ()
    with ThreadPoolExecutor(max_workers=min(8, len(endpoints)), thread_name_prefix="health") as pool:
        return tuple(pool.map(lambda e: fetch_health(e, timeout_s), endpoints))


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _seconds(document: dict[str, Any], key: str) -> float | None:
    value = document.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# -- which endpoints ------------------------------------------------------------------------------


def resolve_endpoints(settings: Settings, flags: Sequence[str] | None) -> tuple[HealthEndpoint, ...]:
    """The endpoints to watch (see the module docstring). `flags` are `--health-url` values; a bad
    one raises `ValueError` naming the flag, a corrupt run file `RunFileError`."""
    if flags:
        from mic_pipeline.config import ConfigError

        try:
            return parse_health_urls("--health-url", ",".join(flags))
        except ConfigError as error:
            raise ValueError(f"--health-url {error.problem}") from None
    if settings.health_urls:
        return settings.health_urls
    return read_run_file(settings.state_dir)


def run_file_path(state_dir: Path) -> Path:
    return state_dir / RUN_FILE


def write_run_file(state_dir: Path, endpoints: Sequence[HealthEndpoint]) -> Path:
    """Record this process (a `run` supervisor) and its children's readiness URLs, atomically."""
    from mic_pipeline.infra.processes import command_line

    path = run_file_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "pid": os.getpid(),
        "command": command_line(os.getpid()),
        "health_urls": [{"name": e.name, "url": e.url} for e in endpoints],
    }
    temporary = path.with_name(f".{RUN_FILE}.{os.getpid()}")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def remove_run_file(state_dir: Path) -> None:
    """Remove the run file if this process wrote it (another `run` may have replaced it)."""
    path = run_file_path(state_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except ValueError as error:
        raise RunFileError(f"{path}: not a run file ({error})") from error
    if isinstance(document, dict) and document.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def read_run_file(state_dir: Path) -> tuple[HealthEndpoint, ...]:
    """The readiness URLs of the `run` recorded in `state_dir`; none when there is no run file or
    its process has ended (or its pid now belongs to another command)."""
    from mic_pipeline.infra.processes import command_line, is_alive

    path = run_file_path(state_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        pid, command = document["pid"], document["command"]
        entries = [(entry["name"], entry["url"]) for entry in document["health_urls"]]
    except FileNotFoundError:
        return ()
    except (ValueError, KeyError, TypeError) as error:
        raise RunFileError(f"{path}: not a run file ({type(error).__name__}: {error}); remove it") from error
    if not isinstance(pid, int) or not is_alive(pid) or command_line(pid) != command:
        return ()
    return tuple(HealthEndpoint(str(url), None if name is None else str(name)) for name, url in entries)
