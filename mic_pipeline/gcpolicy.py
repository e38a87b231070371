"""The garbage-collector thresholds of the long-running processes (the stream worker and the sinks):
fewer collections over a large, long-lived heap.

The decision code allocates several short-lived containers per record; CPython's default thresholds
(700, 10, 10) then start a young collection every 700 net allocations and, every 100 of those, one
that walks the middle generation -- work that grows with the state (entity dicts, markers, parked
records, the member replica), not with the records. Measured over the bench's 100,000-record
backlog (decision code alone, `gc.callbacks` timing each collection): 366 collections took 7.6% of
the time with the defaults, 12 took 3.4-3.6% with `THRESHOLDS`. Garbage is still collected, only
less often: reference counting frees all but cycles, and the decision code makes few (both runs
collected the same 807 objects, e.g. caught exceptions with their tracebacks).

The sinks have the same shape: a batch of decoded rows, stacked columns and statement parameters
is short-lived, while Great Expectations, pandas and SQLAlchemy leave a large heap behind at
start-up that every middle and full collection walks. Measured with callgrind over 20,000 rows of
the bench backlog through the SQL sink: 239 collections and 1.8% of its instructions with the
defaults, 4 collections with `THRESHOLDS`.

`mic-pipeline streams` and `mic-pipeline sink` apply them at start-up;
`mic_pipeline.bench.backlog.decide_offline` uses them while it times the decision code, so that
figure is the worker's.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLDS = (20_000, 10, 10)


def tune_gc() -> None:
    """Set the thresholds for the rest of the process."""
    gc.set_threshold(*THRESHOLDS)


@contextmanager
def worker_gc() -> Iterator[None]:
    """The worker's thresholds inside the block, the previous ones after it."""
    previous = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
