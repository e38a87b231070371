"""Work on untrusted bytes is linear: 16x the input never costs 40x the time.

The same adversarial shape (`schemas_hostile.py`) is decoded at N = 16 KiB and at 16N = 256 KiB (the
size limit) in one run, each timed as the minimum CPU time of several repeats (batched so that a
measurement lasts at least a few milliseconds, sizes measured in turn, three times). Linear work
costs 16x; allocator steps (buffers above glibc's mmap threshold come from fresh pages, each a
fault) and load from other processes have been seen to add up to about 1.6x on this shared VM, so
the limit is 40x: quadratic work (256x), and anything worse than n^1.33 (n^1.5 is 64x), fails.
Absolute speed is the business of `bench/bench_hostile.py`, not of a test.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from schemas_hostile import SHAPES

from schemas.decode import decode_event
from schemas.rawchecks import nesting_too_deep

SMALL = 16 * 1024
FACTOR = 16
RATIO_LIMIT = 40.0
SHAPES_UNDER_TEST = [
    "33 [ + unterminated string of \\\"",
    "event, unterminated title of \\\"",
    "event, title of [ and \\\" (closed)",
    "deep objects {\"a\":{...",
    "depth-32 arrays side by side",
    "flat array of 0s in the payload",
    "flat array of [] in the payload",
    "title of \\\\ pairs",
    "odd backslash run, unterminated",
    "title of \\u0000 escapes",
    "title of \\b\\f escapes",
    "200k-digit money",
    "200k-digit exponent",
    "many unknown payload keys",
    "many distinct unknown keys",
    "duplicate reason: null repeated",
    "whitespace padding (valid event)",
]


def _cpu_seconds(work: Callable[[], object], repeats: int = 5) -> float:
    """Minimum CPU seconds of one call, calls batched so each timed batch lasts at least 5 ms."""
    batch = 1
    while True:
        started = time.process_time()
        for _ in range(batch):
            work()
        if time.process_time() - started >= 0.005 or batch >= 4096:
            break
        batch *= 4
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(batch):
            work()
        best = min(best, (time.process_time() - started) / batch)
    return best


def _ratio(build: Callable[[int], bytes], check: Callable[[bytes], object]) -> float:
    """time(16N) / time(N), each the best of three measurements taken in turn (a busy moment of the
    machine cannot then inflate one size only)."""
    small, large = build(SMALL), build(FACTOR * SMALL)
    assert 0.97 * FACTOR * len(small) <= len(large) <= 1.03 * FACTOR * len(small)
    small_s = large_s = float("inf")
    for _ in range(3):
        small_s = min(small_s, _cpu_seconds(lambda: check(small)))
        large_s = min(large_s, _cpu_seconds(lambda: check(large)))
    return large_s / small_s


@pytest.mark.parametrize("shape", SHAPES_UNDER_TEST)
def test_decode_time_grows_linearly(shape: str) -> None:
    ratio = _ratio(SHAPES[shape], lambda raw: decode_event(raw, topic="mic.orders"))
    assert ratio < RATIO_LIMIT, f"{shape}: {FACTOR}x the bytes took {ratio:.1f}x the time"


def test_nesting_check_grows_linearly_on_escaped_quotes() -> None:
    """The defect of issue 10: the string-stripping regex retried at every quote (quadratic)."""
    ratio = _ratio(SHAPES["33 [ + unterminated string of \\\""], nesting_too_deep)
    assert ratio < RATIO_LIMIT, f"{FACTOR}x the bytes took {ratio:.1f}x the time"
