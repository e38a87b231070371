"""Prometheus metrics of every long-running pipeline process, and its `/metrics` + `/health` server.

One registry per process (the default one). Names follow Prometheus conventions; labels are small
closed sets (topics, reasons, sinks, tables), never event ids.

| metric | type | labels | meaning |
|---|---|---|---|
| `mic_events_in_total` | counter | topic | records consumed |
| `mic_events_out_total` | counter | topic | records produced |
| `mic_dead_letters_total` | counter | reason | dead letters produced |
| `mic_duplicates_total` | counter | family | repeated event_ids dropped |
| `mic_consumer_lag_records` | gauge | group, topic, partition | end offset minus committed offset |
| `mic_batch_write_seconds` | histogram | sink | time to write one batch durably |
| `mic_rows_written_total` | counter | sink, table | rows landed |
| `mic_quality_gate_total` | counter | table, result | gate runs per batch: `passed`, `quarantined` |
| `mic_rows_quarantined_total` | counter | table | rows kept out (gate, database refusal) |
| `mic_sink_consumer_renewals_total` | counter | sink, reason | new consumers: `unassigned`, `unfetchable` |
| `mic_streams_parked_records` | gauge | partition | records waiting for their member (rule 1) |
| `mic_streams_changelog_records_total` | counter | kind | state changelog records written, by key kind |

`serve(port, ready=..., health=...)` answers `GET /metrics`, `GET /health/live` (200 while the
process runs) and `GET /health/ready` (200 when `ready()` is true and `health`, a
`mic_pipeline.health.Health`, is ready; else 503 with the reasons as JSON); `/health` is an alias
of ready.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from mic_pipeline.health import Health

EVENTS_IN = Counter("mic_events_in_total", "Records consumed", ["topic"])
EVENTS_OUT = Counter("mic_events_out_total", "Records produced", ["topic"])
DEAD_LETTERS = Counter("mic_dead_letters_total", "Dead letters produced", ["reason"])
DUPLICATES = Counter("mic_duplicates_total", "Repeated event_ids dropped", ["family"])
PARKED = Gauge("mic_streams_parked_records", "Records waiting for their member (rule 1)", ["partition"])
CHANGELOG_RECORDS = Counter(
    "mic_streams_changelog_records_total",
    "State changelog records written at checkpoints, by key kind (e = markers, r = parked records...)",
    ["kind"],
)
CONSUMER_LAG = Gauge(
    "mic_consumer_lag_records", "End offset minus committed offset", ["group", "topic", "partition"]
)
BATCH_WRITE_SECONDS = Histogram(
    "mic_batch_write_seconds",
    "Time to write one batch durably",
    ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CONSUMER_RENEWALS = Counter(
    "mic_sink_consumer_renewals_total",
    "Times a sink started over with a new Kafka consumer (no assignment, or partitions never fetched)",
    ["sink", "reason"],
)
ROWS_WRITTEN = Counter("mic_rows_written_total", "Rows landed", ["sink", "table"])
QUALITY_GATE = Counter(
    "mic_quality_gate_total",
    "Quality-gate runs, one per table and batch: passed, or quarantined when any row was",
    ["table", "result"],
)
ROWS_QUARANTINED = Counter(
    "mic_rows_quarantined_total", "Rows kept out of the warehouse (quality gate, database refusal)", ["table"]
)


def _always_ready() -> bool:
    return True


class _Handler(BaseHTTPRequestHandler):
    ready: Callable[[], bool] = staticmethod(_always_ready)
    health: Health | None = None

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/metrics":
            self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif path == "/health/live":
            self._send(200, b'{"status": "live"}\n', "application/json")
        elif path in ("/health", "/health/ready"):
            self._send_readiness()
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send_readiness(self) -> None:
        handler = type(self)
        ok = handler.ready()
        document: dict[str, object] = {"status": "ready" if ok else "not ready"}
        if handler.health is not None:
            state = handler.health.state()
            ok = ok and state.ready
            document = state.as_json()
            document["status"] = "ready" if ok else "not ready"
        body = json.dumps(document).encode() + b"\n"
        self._send(200 if ok else 503, body, "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging; scrapes every few seconds would flood the logs."""


def serve(
    port: int,
    ready: Callable[[], bool] = _always_ready,
    host: str = "127.0.0.1",
    *,
    health: Health | None = None,
) -> ThreadingHTTPServer:
    """Start the metrics and health server on a daemon thread; returns it (call `shutdown()` to stop).

    Port 0 picks a free port (read it from `server.server_address`).
    """
    handler = type("MetricsHandler", (_Handler,), {"ready": staticmethod(ready), "health": health})
    server = ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"metrics:{port}", daemon=True)
    thread.start()
    return server
