"""What `status` measured, as Prometheus gauges of the web page's process (`mic-pipeline web
--metrics-port P`, which then measures every refresh interval whether or not a page polls).

| metric | labels | meaning |
|---|---|---|
| `mic_consumer_lag_records` | group, topic, partition | end minus committed offset (`mic_pipeline.metrics`) |
| `mic_consumer_lag_seconds` | group, topic, partition | age of the oldest unprocessed record |
| `mic_consumer_committed_offset` | group, topic, partition | committed offset (stopped: no `changes`) |
| `mic_consumer_group_state` | group, state | 1 for the group's state (`mic_pipeline.ops.lag_rules`) |
| `mic_consumer_commit_interval_seconds` | group | the commit interval the lag rules judge by |
| `mic_warehouse_landed_age_seconds` | table, sink | age of the newest `landed_at` (absent: none) |
| `mic_warehouse_waiting_seconds` | table, sink | age of the oldest record on its way (0: none) |
| `mic_quarantined_rows` | - | rows and batches kept out by the gate, failed checks |
| `mic_pipeline_verdict` | - | 0 OK, 1 DEGRADED, 2 FAILING |

Label values are group, topic and table names (a closed set), never event data.
"""

from __future__ import annotations

from prometheus_client import Gauge

from mic_pipeline.metrics import CONSUMER_LAG
from mic_pipeline.ops.lag_rules import STATES_DEGRADED, STATES_FAILING
from mic_pipeline.ops.verdict import Assessment, StatusSnapshot

LAG_SECONDS = Gauge(
    "mic_consumer_lag_seconds", "Age of the oldest unprocessed record", ["group", "topic", "partition"]
)
COMMITTED = Gauge("mic_consumer_committed_offset", "Committed offset", ["group", "topic", "partition"])
GROUP_STATE = Gauge(
    "mic_consumer_group_state", "1 for the group's state of the lag rules (ok, not committing, ...)",
    ["group", "state"],
)  # fmt: skip
COMMIT_INTERVAL = Gauge(
    "mic_consumer_commit_interval_seconds", "The commit interval the lag rules judge a group by", ["group"]
)
LANDED_AGE = Gauge(
    "mic_warehouse_landed_age_seconds", "Age of the newest landed_at of a table in a sink", ["table", "sink"]
)
WAITING = Gauge(
    "mic_warehouse_waiting_seconds",
    "Age of the oldest record on its way to a sink (0: none)",
    ["table", "sink"],
)
QUARANTINED = Gauge("mic_quarantined_rows", "Quarantined rows and batches and failed checks (status)")
VERDICT = Gauge("mic_pipeline_verdict", "The verdict of status: 0 OK, 1 DEGRADED, 2 FAILING")

STATES = ("ok", *STATES_DEGRADED, *STATES_FAILING)
_VERDICTS = {"OK": 0, "DEGRADED": 1, "FAILING": 2}


def publish(snapshot: StatusSnapshot, assessment: Assessment) -> None:
    """Set every gauge from one measurement (the broker reachable: lag gauges too)."""
    VERDICT.set(_VERDICTS[assessment.verdict.value])
    if snapshot.broker_error is None:
        for group in snapshot.groups:
            for p in group.partitions:
                labels = {"group": group.group, "topic": p.topic, "partition": str(p.partition)}
                CONSUMER_LAG.labels(**labels).set(p.lag_records)
                LAG_SECONDS.labels(**labels).set(p.lag_seconds)
                if p.committed is not None:
                    COMMITTED.labels(**labels).set(p.committed)
        for judgement in assessment.groups:
            COMMIT_INTERVAL.labels(group=judgement.group).set(judgement.interval_s)
            for state in STATES:
                GROUP_STATE.labels(group=judgement.group, state=state).set(int(state == judgement.state))
    if snapshot.warehouse_error is None:
        for fresh in snapshot.freshness:
            labels = {"table": fresh.table, "sink": fresh.sink}
            if fresh.age_seconds is not None:
                LANDED_AGE.labels(**labels).set(fresh.age_seconds)
            if fresh.waiting_seconds is not None or fresh.inputs_since is not None:
                WAITING.labels(**labels).set(fresh.waiting_seconds or 0.0)
        QUARANTINED.set(snapshot.quality.failures)
