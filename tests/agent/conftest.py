"""Fixtures of the agent's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ._cluster import Cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Servers and agents as real processes on loopback, killed at the end of the test."""
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        await cluster.aclose()
