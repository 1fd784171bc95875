"""The benchmarks still run: each one's measurement, made tiny.

``nox -s bench`` runs them in full, by hand; CI does not, and an interface change once broke one
unnoticed. These only check that a small run completes and gives a sane figure, never a speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench import engine_throughput, memory_footprint, sql_throughput


async def test_engine_throughput_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_throughput, "BURST", 300)
    monkeypatch.setattr(engine_throughput, "LATENCY_JOBS", 200)
    assert await engine_throughput._throughput() > 0
    p50, p99 = await engine_throughput._latency()
    assert 0 < p50 <= p99


async def test_sql_throughput_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sql_throughput, "JOBS", 100)
    assert await sql_throughput._life(f"sqlite:///{tmp_path / 'life.db'}") > 0
    assert await sql_throughput._life("memory://") > 0


def test_memory_footprint_runs() -> None:
    argv = [sys.executable, "-c", memory_footprint._CHILD, "1"]  # 1,000 jobs
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    assert float(out.stdout) > 0
