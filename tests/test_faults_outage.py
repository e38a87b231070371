"""Two of three brokers down under the running pipeline, then back.

With two of three brokers gone nothing can be acknowledged (`min.insync.replicas=2`, and the
controller quorum has lost its majority), while the stream worker and both sinks keep running and
the producer keeps sending at a steady rate. Every record the producer could not get acknowledged
is reported failed (the publisher test covers how); here the subject is the pipeline: it must ride
the outage out -- or, for a process whose own writes could not be acknowledged, stop with a clear
error and be restarted -- and, once both brokers are back and the failed records re-published,
every event must be in the warehouse or the dead letters exactly once (`faults_reconcile`).

The records sent during the outage are "probes" whose outcome depends on no other record: a
re-published record arrives after those sent behind it, and an order event re-published after its
successors would rightly be refused as an invalid transition -- putting failed records back in order
is the integrator's part (`README.md`, "Guarantees").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from faults_pipeline import Pipeline
from faults_reconcile import reconcile
from faults_traffic import NOT_HANDED, Sender, Sent, Traffic
from streams_kafka import wait_until

from mic_pipeline.config import Settings

if TYPE_CHECKING:
    from faults_cluster import Cluster

pytest_plugins = ["faults_cluster"]
pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

RATE = 100
FAILED_DURING_OUTAGE = 300
"""Records the producer must have reported failed before the brokers come back (~3 s at `RATE`
after the first failures: they start once the publisher's 5 s delivery timeout expires)."""


def test_two_of_three_brokers_down_under_the_running_pipeline_then_back_reconciles(
    cluster: Cluster, faults_settings: Settings, tmp_path: Path
) -> None:
    settings = faults_settings
    traffic = Traffic(settings, seed=67)
    pipeline = Pipeline(settings, tmp_path / "logs")
    exits: dict[str, int] = {}
    senders: list[Sender] = []

    def at_least(count: int, records: Callable[[], list[Sent]], sender: Sender) -> Callable[[], bool]:
        def reached() -> bool:
            if not sender.is_alive():
                sender.finish()  # raises what stopped it
                raise AssertionError("the producer stopped sending")
            return len(records()) >= count

        return reached

    try:
        worker, _, _ = pipeline.start_all()
        # lifecycles (members, orders, patents, factoring) before the outage; all of them sent (the
        # records after the outage continue the same simulated stream: its members must be there)
        traffic.send(traffic.take(1000, hostile=10), rate=2 * RATE)
        assert len(traffic.acknowledged()) == len(traffic.records), "the brokers were healthy"
        # during it, records whose outcome depends on no other record (new members, intrinsically
        # invalid records): re-published later and out of order, they must end exactly as sent in order
        during = traffic.send_in_background(traffic.probes(20_000), rate=RATE, timeout_s=5.0, keep_going=True)
        senders.append(during)
        survivor = cluster.nodes[0]
        killed = [node for node in cluster.nodes if node != survivor]
        for node in killed:
            cluster.kill(node)
        wait_until(at_least(FAILED_DURING_OUTAGE, traffic.failed, during), 120,
                   f"{FAILED_DURING_OUTAGE} records reported failed during the outage")
        cluster.heal()  # both back, every partition fully in sync again
        acknowledged = len(traffic.acknowledged())
        wait_until(at_least(acknowledged + 300, traffic.acknowledged, during), 120,
                   "300 records acknowledged after the outage")
        during.stopping.set()
        during.finish()
        failed = [sent for sent in traffic.failed() if sent.error != NOT_HANDED]
        traffic.send([traffic.resend(sent) for sent in failed])
        traffic.send(traffic.take(1000), rate=2 * RATE)  # lifecycles again, after the outage
        for proc in list(pipeline.started):  # a process whose writes failed may have stopped: restart it
            if not proc.alive:
                exits[proc.name] = proc.process.returncode
                restarted = pipeline.restart(proc)
                if proc is worker:
                    worker = restarted
        counts = reconcile(settings, traffic, [worker],
                           notes={"killed": killed, "survivor": survivor, "exits": exits,
                                  "republished": len(failed), "refused": traffic.refused})
    finally:
        for sender in senders:
            sender.stopping.set()
        pipeline.close()
    assert counts.failed >= FAILED_DURING_OUTAGE
    assert counts.acknowledged + counts.failed == counts.produced
    # every process either rode the outage out or stopped with its own exit status (not a crash)
    assert all(status in (3, 4) for status in exits.values()), exits
