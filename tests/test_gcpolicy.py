"""The worker's collector thresholds: set for the process, or only inside a block."""

from __future__ import annotations

import gc

import pytest

from mic_pipeline.gcpolicy import THRESHOLDS, tune_gc, worker_gc


def test_the_block_uses_the_workers_thresholds_and_restores_the_previous_ones() -> None:
    before = gc.get_threshold()
    assert before != THRESHOLDS
    with worker_gc():
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), worker_gc():
        raise RuntimeError("a failing block")
    assert gc.get_threshold() == before


def test_tune_gc_sets_them_for_the_process() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == THRESHOLDS
    finally:
        gc.set_threshold(*before)
