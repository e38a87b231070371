"""Shared fixtures.

Tests marked `kafka` use the real broker named by `MIC_KAFKA_BOOTSTRAP`; tests marked `postgres`
use `MIC_TEST_POSTGRES_URL`. The README's test command (`scripts/test.sh`) starts both and sets
`MIC_REQUIRE_INFRA=1`, which turns a missing service into a failure instead of a skip.
Each test gets its own topic prefix, so tests never see each other's records.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mic_pipeline.config import Settings


def _require(variable: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        if os.environ.get("MIC_REQUIRE_INFRA") == "1":
            pytest.fail(f"{variable} is not set but MIC_REQUIRE_INFRA=1")
        pytest.skip(f"{variable} not set (run the tests through scripts/test.sh)")
    return value


@pytest.fixture
def kafka_bootstrap() -> str:
    """Bootstrap address of the real test broker."""
    return _require("MIC_KAFKA_BOOTSTRAP")


@pytest.fixture
def postgres_url() -> str:
    """SQLAlchemy URL of the real test PostgreSQL database."""
    return _require("MIC_TEST_POSTGRES_URL")


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix unique to this test."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings of an isolated pipeline: own topics, own warehouse and state directories."""
    yield Settings(
        kafka_bootstrap=kafka_bootstrap,
        warehouse_dir=tmp_path / "warehouse",
        topic_prefix=topic_prefix,
        partitions=3,
        state_dir=tmp_path / "state",
    )


@pytest.fixture
def pipeline_topics(settings: Settings) -> Settings:
    """`settings` with every pipeline topic created on the broker."""
    from mic_pipeline.infra.topics import create_topics

    create_topics(settings)
    return settings
