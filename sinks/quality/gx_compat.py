"""A workaround for a cost of Great Expectations in the quality gate, with the versions it is for.

**A fingerprint of every validated frame, which nothing reads.** GX 1.x's
`PandasExecutionEngine.get_batch_data_and_markers` hashes every frame whose shallow memory usage is
below `HASH_THRESHOLD` (1e9 bytes: every frame the gate makes) with `pandas.util.hash_pandas_object`
over every value of every column, then MD5, only to keep the digest as the batch marker
`pandas_data_fingerprint` (GX's own code reads it nowhere; it ends up in the result's metadata, which
the gate does not keep). Profiled (py-spy) over the bench backlog through the SQL sink, that hashing
was 30% of the time GX spent validating the gate's stacked frames: a cost per row, on every call.

`skip_fingerprint` sets the threshold to 0, so no frame is hashed; everything else GX does with the
frame is unchanged. The threshold is a constant of GX's module, read at every call, so this is a
process-wide setting: the gate is the process's only user of GX. `FINGERPRINT_VERSIONS` gates it;
on another release it is not applied, and a test fails until someone checks the cost again
(`tests/test_sinks_gx_compat.py`).
"""

from __future__ import annotations

import great_expectations as gx
from great_expectations.execution_engine import pandas_execution_engine

FINGERPRINT_VERSIONS = ("1.24.",)
"""Great Expectations releases checked to fingerprint every frame below `HASH_THRESHOLD`."""


def fingerprint_skip_needed(version: str = gx.__version__) -> bool:
    """Whether this Great Expectations release needs `skip_fingerprint`."""
    return version.startswith(FINGERPRINT_VERSIONS)


def skip_fingerprint() -> bool:
    """No frame fingerprinted from now on, where `fingerprint_skip_needed`; returns whether applied."""
    if not fingerprint_skip_needed() or not hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        return False
    pandas_execution_engine.HASH_THRESHOLD = 0
    return True
