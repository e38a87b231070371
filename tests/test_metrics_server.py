"""The metrics/health server answers scrapes and reflects readiness."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from mic_pipeline import metrics


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_and_health_endpoints() -> None:
    state = {"ready": False}
    server = metrics.serve(0, ready=lambda: state["ready"])
    port = server.server_address[1]
    try:
        metrics.DEAD_LETTERS.labels(reason="malformed").inc(3)
        status, body = _get(port, "/metrics")
        assert status == 200
        assert 'mic_dead_letters_total{reason="malformed"}' in body
        assert _get(port, "/health/live")[0] == 200
        assert _get(port, "/health/ready")[0] == 503
        state["ready"] = True
        assert _get(port, "/health")[0] == 200
        assert _get(port, "/nope")[0] == 404
    finally:
        server.shutdown()


@pytest.mark.parametrize("path", ["/metrics/", "/metrics?x=1"])
def test_metrics_path_variants(path: str) -> None:
    server = metrics.serve(0)
    try:
        assert _get(server.server_address[1], path)[0] == 200
    finally:
        server.shutdown()
