"""A scheduling pass's plan: a ranking policy's heap gives exactly what asking it job by job
gives, and the plan never breaks a constraint."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hodei_core import Capacity, Job, JobSpec, Resources, Worker, WorkerView
from hodei_core._planning import plan, ranking_key
from hodei_core._quota import QuotaManager
from hodei_core.policies import BinPack, FirstFit, LeastLoaded
from hodei_core.ports import RankingPolicy, SchedulingPolicy

_LABELS = ("linux", "gpu", "arm")


class _AskEveryTime:
    """The same policy with its ``sort_key`` hidden: the scheduler must call ``choose``."""

    def __init__(self, policy: SchedulingPolicy) -> None:
        self._policy = policy

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        return self._policy.choose(job, candidates)


@st.composite
def _fleets(draw: st.DrawFn) -> tuple[list[WorkerView], list[Job]]:
    views = []
    for i in range(draw(st.integers(1, 12))):
        slots = draw(st.integers(1, 5))
        worker = Worker(
            id=f"w{i}",
            name=f"w{i}",
            labels=frozenset(draw(st.sets(st.sampled_from(_LABELS)))),
            capacity=Capacity(slots=slots, cpu=draw(st.sampled_from([None, 2.0]))),
        )
        views.append(WorkerView(worker, used_slots=draw(st.integers(0, slots - 1))))
    # a few kinds of job, each shared by many jobs (as alike submissions share their values)
    kinds = [
        (frozenset(draw(st.sets(st.sampled_from(_LABELS), max_size=1))), Resources(cpu=cpu))
        for cpu in draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=3))
    ]
    jobs = []
    for n, k in enumerate(draw(st.lists(st.integers(0, len(kinds) - 1), max_size=60))):
        labels, resources = kinds[k]
        spec = JobSpec(command=["true"], labels=labels, resources=resources)
        jobs.append(Job(id=f"j{n}", spec=spec))
    return views, jobs


def _plan(policy: SchedulingPolicy, views: list[WorkerView], jobs: list[Job]) -> list[object]:
    free = sum(v.free_slots for v in views)
    homeless: list[Job] = []
    assignments = plan(
        jobs,
        views,
        free=free,
        policy=policy,
        quotas=QuotaManager(None, None),
        running=None,
        homeless=homeless,
    )
    return [*assignments, "homeless", *(j.id for j in homeless)]


@pytest.mark.parametrize("policy", [LeastLoaded(), BinPack(), FirstFit()])
@settings(max_examples=80, deadline=None)
@given(fleet=_fleets())
def test_a_ranking_policy_plans_as_if_asked_for_every_job(
    policy: SchedulingPolicy, fleet: tuple[list[WorkerView], list[Job]]
) -> None:
    assert isinstance(policy, RankingPolicy)
    views, jobs = fleet
    assert _plan(policy, views, jobs) == _plan(_AskEveryTime(policy), views, jobs)


@settings(max_examples=80, deadline=None)
@given(fleet=_fleets())
def test_a_plan_keeps_every_constraint(fleet: tuple[list[WorkerView], list[Job]]) -> None:
    views, jobs = fleet
    by_id = {v.id: v for v in views}
    specs = {j.id: j.spec for j in jobs}
    assignments = plan(
        jobs,
        views,
        free=sum(v.free_slots for v in views),
        policy=LeastLoaded(),
        quotas=QuotaManager(None, None),
        running=None,
        homeless=[],
    )
    assert len({a.job_id for a in assignments}) == len(assignments)
    taken = Counter(a.worker_id for a in assignments)
    for worker_id, n in taken.items():
        assert n <= by_id[worker_id].free_slots
    for a in assignments:
        worker = by_id[a.worker_id].worker
        assert specs[a.job_id].labels <= worker.labels
    cpu = Counter[str]()
    for a in assignments:
        cpu[a.worker_id] += specs[a.job_id].resources.cpu  # type: ignore[assignment]
    for worker_id, used in cpu.items():
        limit = by_id[worker_id].worker.capacity.cpu
        assert limit is None or used <= limit


class _LastOfLeastLoaded(LeastLoaded):
    """Inherits ``sort_key`` but chooses otherwise: its ``choose`` must be the one used."""

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        return candidates[-1]


def test_a_subclass_that_overrides_choose_is_asked_for_every_job() -> None:
    workers = [Worker(id=f"w{i}", name=f"w{i}", capacity=Capacity(slots=2)) for i in range(3)]
    views = [WorkerView(worker) for worker in workers]
    job = Job(id="j", spec=JobSpec(command=["true"]))
    policy = _LastOfLeastLoaded()
    assert ranking_key(policy) is None
    assert ranking_key(LeastLoaded()) is not None
    assert [a.worker_id for a in _plan(policy, views, [job])[:1]] == ["w2"]  # type: ignore[attr-defined]
