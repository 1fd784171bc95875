"""Scheduling policies: the stock ones pass the checker, and the checker catches bad ones."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hodei_core import Capacity, Job, JobSpec, Resources, Worker, WorkerView
from hodei_core.policies import BinPack, FirstFit, LeastLoaded, RoundRobin
from hodei_core.testing import check_scheduling_policy


@pytest.mark.parametrize("policy", [FirstFit(), LeastLoaded(), BinPack(), RoundRobin()])
def test_stock_policies_keep_the_rules(policy: object) -> None:
    check_scheduling_policy(policy)  # type: ignore[arg-type]


class Outsider:
    """Chooses a worker it was not offered."""

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        return attrs.evolve(candidates[0])  # equal, but not one of the candidates


class Meddler:
    def choose(self, job: Job, candidates: list[WorkerView]) -> WorkerView | None:  # type: ignore[override]
        candidates.reverse()
        return candidates[0]


class Liar:
    """Says it ranks by load, but picks the last candidate."""

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        return candidates[-1]

    def sort_key(self, view: WorkerView) -> float:
        return view.load


class Slow:
    async def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        return None


@pytest.mark.parametrize(
    ("policy", "complaint"),
    [
        (Outsider(), "not one of the candidates"),
        (Meddler(), "changed the candidates"),
        (Slow(), "must not be async"),
        (Liar(), "ranks by sort_key but chose"),
        (object(), "no choose"),
    ],
)
def test_checker_catches_broken_policies(policy: object, complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        check_scheduling_policy(policy)  # type: ignore[arg-type]


def test_round_robin_takes_turns() -> None:
    views = [WorkerView(Worker(id=f"w{i}", name=f"w{i}")) for i in range(3)]
    job = Job(id="j", spec=JobSpec(command=["t"]))
    policy = RoundRobin()
    assert [policy.choose(job, views).id for _ in range(4)] == ["w0", "w1", "w2", "w0"]  # type: ignore[union-attr]


@given(
    slots=st.integers(0, 8),
    used=st.integers(0, 8),
    cpu=st.floats(0, 64),
    memory_mb=st.integers(0, 1 << 20),
    job_cpu=st.floats(0, 8),
    job_memory_mb=st.integers(0, 4096),
)
def test_with_job_is_a_view_with_one_job_more(
    slots: int, used: int, cpu: float, memory_mb: int, job_cpu: float, job_memory_mb: int
) -> None:
    """``with_job`` builds the view without attrs' ``__init__``: it must give the same view."""
    worker = Worker(id="w", name="w", capacity=Capacity(slots=slots, cpu=64.0))
    view = WorkerView(worker, used, cpu, memory_mb)
    spec = JobSpec(command=["true"], resources=Resources(cpu=job_cpu, memory_mb=job_memory_mb))
    after = view.with_job(spec)
    expected = WorkerView(worker, used + 1, cpu + job_cpu, memory_mb + job_memory_mb)
    assert after == expected
    assert (after.free_slots, after.load) == (expected.free_slots, expected.load)
