"""`mic_pipeline.health`: readiness with reasons, cleared by progress or explicitly."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from mic_pipeline import metrics
from mic_pipeline.health import Health


def test_problems_make_it_not_ready_until_progress_or_clear() -> None:
    now = [100.0]
    health = Health("sink-sql", clock=lambda: now[0])
    assert health.ready and health.state().reasons == ()
    health.problem("database", "database unavailable: connection refused")
    now[0] = 101.0
    health.problem("disk", "disk full", sticky=True)
    state = health.state()
    assert not state.ready
    assert state.reasons == ("database unavailable: connection refused", "disk full")
    assert state.since == 100.0
    now[0] = 105.0
    health.progress()
    assert health.state().reasons == ("disk full",) and health.state().last_progress == 105.0
    health.clear("disk")
    assert health.ready and health.state().since == 105.0


def test_ready_endpoint_reports_the_reasons() -> None:
    health = Health("sink-parquet")
    server = metrics.serve(0, health=health)
    url = f"http://127.0.0.1:{server.server_address[1]}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.loads(response.read())["status"] == "ready"
        health.problem("disk", "warehouse directory not writable: [Errno 28] No space left on device")
        try:
            urllib.request.urlopen(url, timeout=5)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as error:
            assert error.code == 503
            document = json.loads(error.read())
        assert document["status"] == "not ready"
        assert document["reasons"] == ["warehouse directory not writable: [Errno 28] No space left on device"]
    finally:
        server.shutdown()
