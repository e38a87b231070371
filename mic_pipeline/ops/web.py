"""`mic-pipeline web`: the operators' live page and its JSON endpoints (standard-library HTTP server).

| path | answer |
|---|---|
| `/` | the self-contained page (`static/index.html`: inline CSS, JS and SVG charts, no external URL) |
| `/api/status` | the `status --json` document (measured at most once per `status_ttl_s`, shared by clients) |
| `/api/aggregates` | the stream's live aggregates from `streams_url`; 502 with `{"error"}` when down |
| `/api/trace?event_id=ID` | `mic-pipeline trace ID --json` (`mic_pipeline.ops.trace`); 400 for a bad id |
| `/api/trace?company=INN&since=T` | `trace --company INN --since T --json` (T default 24h) |
| `/health/live` | 200 while the process runs |
| `/health`, `/health/ready` | 200 once a status was measured with the broker reachable, else 503 |

The page polls both APIs every `refresh_ms` and redraws; it keeps a short history in the browser for
the trend charts. Measuring is done on request threads, one at a time (a lock), never concurrently.
The status includes the readiness of the components at `health_endpoints`.
The page renders every value as text (`textContent`, `setAttribute`), never as HTML: names, reasons
and details can carry event data.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import orjson

from mic_pipeline.config import HealthEndpoint, Settings
from mic_pipeline.ops.trace import Worker, stream_workers
from mic_pipeline.ops.verdict import LagSample, StatusSnapshot, Thresholds, evaluate, snapshot_to_json
from mic_pipeline.text import printable_json

AGGREGATES_TIMEOUT_S = 3.0
HISTORY_S = 60.0
"""The window of the lag rules on the web page (`mic_pipeline.ops.lag_rules`)."""


def default_streams_url(environ: dict[str, str]) -> str:
    """`MIC_STREAMS_URL`, else the stream worker's aggregates view on its default port."""
    explicit = environ.get("MIC_STREAMS_URL")
    if explicit:
        return explicit
    return f"http://127.0.0.1:{environ.get('MIC_STREAMS_WEB_PORT', '6066')}/aggregates"


def render_page(refresh_ms: int) -> bytes:
    """The page with its refresh interval filled in."""
    template = resources.files("mic_pipeline.ops").joinpath("static/index.html").read_text("utf-8")
    return template.replace("__REFRESH_MS__", str(int(refresh_ms))).encode("utf-8")


@dataclass
class StatusSource:
    """Measures the pipeline's status at most once per `ttl_s` and serves the cached document.

    The window of the lag rules is this server's own history: the groups' offsets of every
    measurement of the last `history_s` seconds (measurements happen while someone polls)."""

    measure: Callable[[], StatusSnapshot]
    thresholds: Thresholds
    ttl_s: float = 1.0
    history_s: float = HISTORY_S
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _document: dict[str, Any] | None = None
    _measured_at: float = float("-inf")
    _history: list[LagSample] = field(default_factory=list)
    broker_reachable: bool = False

    def document(self) -> dict[str, Any]:
        """The latest status document, measured now when the cached one is older than `ttl_s`."""
        with self._lock:
            if self._document is None or time.monotonic() - self._measured_at >= self.ttl_s:
                snapshot = self._with_history(self.measure())
                assessment = evaluate(snapshot, self.thresholds)
                self._document = snapshot_to_json(snapshot, assessment, self.thresholds)
                self._measured_at = time.monotonic()
                self.broker_reachable = snapshot.broker_error is None
                from mic_pipeline.ops.ops_metrics import publish

                publish(snapshot, assessment)
            return self._document

    def sample_every(self, interval_s: float, stop: threading.Event) -> threading.Thread:
        """Measure every `interval_s` on a daemon thread until `stop` (for Prometheus: the gauges and
        the lag window stay current while no page polls)."""

        def loop() -> None:
            while not stop.wait(interval_s):
                self.document()

        thread = threading.Thread(target=loop, name="status-sampler", daemon=True)
        thread.start()
        return thread

    def _with_history(self, snapshot: StatusSnapshot) -> StatusSnapshot:
        """`snapshot` with the earlier samples of the last `history_s`; remembers this one."""
        if snapshot.broker_error is not None:
            return snapshot
        oldest = snapshot.taken_at.timestamp() - self.history_s
        self._history = [s for s in self._history if s.at.timestamp() >= oldest]
        judged = replace(snapshot, history=tuple(self._history))
        self._history.append(LagSample(snapshot.taken_at, snapshot.groups))
        return judged


def fetch_aggregates(url: str, timeout_s: float = AGGREGATES_TIMEOUT_S) -> tuple[int, bytes]:
    """(HTTP status, JSON body) of the stream's aggregates; 502 with an `error` when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read()
        orjson.loads(body)
        return 200, body
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        return 502, orjson.dumps({"error": f"stream aggregates unavailable at {url}: {reason}"})


class _Handler(BaseHTTPRequestHandler):
    status_source: StatusSource
    streams_url: str
    page: bytes
    tracer: Callable[[dict[str, str]], tuple[int, dict[str, Any]]]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/":
            self._send(200, self.page, "text/html; charset=utf-8")
        elif path == "/api/status":
            body = printable_json(orjson.dumps(self.status_source.document()).decode()).encode()
            self._send(200, body, "application/json")
        elif path == "/api/aggregates":
            status, body = fetch_aggregates(self.streams_url)
            self._send(status, body, "application/json")
        elif path == "/api/trace":
            query = urllib.parse.parse_qs(self.path.partition("?")[2], max_num_fields=4)
            status, document = type(self).tracer({k: v[0] for k, v in query.items() if v})
            self._send(status, printable_json(orjson.dumps(document).decode()).encode(), "application/json")
        elif path == "/health/live":
            self._send(200, b'{"status": "live"}', "application/json")
        elif path in ("/health", "/health/ready"):
            ready = self.status_source.broker_reachable
            body = b'{"status": "ready"}' if ready else b'{"status": "not ready"}'
            self._send(200 if ready else 503, body, "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging: the page polls every few seconds."""


def answer_trace(
    settings: Settings, workers: Sequence[Worker], query: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, document) of `/api/trace`: 400 for a bad id, INN or time, 502 when the broker
    cannot be reached."""
    import re
    from datetime import UTC, datetime

    from kafka.errors import KafkaError

    from mic_pipeline.ops.deadletters import parse_since
    from mic_pipeline.ops.trace import trace_company, trace_event

    if "company" in query:
        company = query["company"].strip()
        if not re.fullmatch(r"\d{10}|\d{12}", company):
            return 400, {"error": "company must be an INN: 10 or 12 digits"}
        try:
            since = parse_since(query.get("since") or "24h", datetime.now(UTC))
        except ValueError as error:
            return 400, {"error": str(error)}
        return 200, trace_company(settings, company, since)
    event_id = query.get("event_id", "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", event_id):
        return 400, {"error": "event_id must be a UUID (or search a company's INN)"}
    try:
        return 200, trace_event(settings, event_id, workers)
    except (KafkaError, OSError) as error:
        return 502, {"error": f"Kafka broker unreachable at {settings.kafka_bootstrap}: {error}"}


def make_server(
    settings: Settings,
    *,
    thresholds: Thresholds,
    groups: Sequence[str] | None = None,
    health_endpoints: Sequence[HealthEndpoint] = (),
    streams_url: str,
    port: int = 8080,
    host: str = "127.0.0.1",
    refresh_ms: int = 3000,
    status_ttl_s: float = 1.0,
    kafka_timeout_ms: int = 5000,
    trace_workers: Sequence[Worker] | None = None,
) -> ThreadingHTTPServer:
    """The web server (not started: call `serve_forever`, or run it on a thread). Port 0 picks one."""
    from mic_pipeline.ops.status import collect_status

    source = StatusSource(
        lambda: collect_status(
            settings,
            groups,
            timeout_ms=kafka_timeout_ms,
            health_endpoints=health_endpoints,
            window_s=0,
            intervals=thresholds.intervals,
        ),
        thresholds,
        ttl_s=status_ttl_s,
    )
    workers = (
        stream_workers(health_endpoints, [streams_url]) if trace_workers is None else list(trace_workers)
    )

    def tracer(query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return answer_trace(settings, workers, query)

    handler = type(
        "OpsWebHandler",
        (_Handler,),
        {
            "status_source": source,
            "streams_url": streams_url,
            "page": render_page(refresh_ms),
            "tracer": staticmethod(tracer),
        },
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
