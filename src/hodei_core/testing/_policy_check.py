"""``check_scheduling_policy``: what any scheduling policy must do, checked on random cases."""

from __future__ import annotations

import copy
import inspect
import random

from .._models import Capacity, Job, JobSpec, Resources, Worker, WorkerView
from .._planning import ranking_key
from ..ports import SchedulingPolicy

__all__ = ["check_scheduling_policy"]


def _random_case(rng: random.Random, n: int) -> tuple[Job, list[WorkerView]]:
    labels: tuple[str, ...] = ("linux", "gpu", "arm", "big")
    spec = JobSpec(
        command=["true"],
        labels=rng.sample(labels, rng.randint(0, 2)),
        resources=Resources(cpu=rng.choice([0.0, 0.5, 1.0]), memory_mb=rng.choice([0, 256])),
        priority=rng.randint(-5, 5),
    )
    job = Job(id=f"job-{n}", spec=spec)
    views = []
    for i in range(rng.randint(1, 12)):
        slots = rng.randint(1, 8)
        worker = Worker(
            id=f"w{n}-{i}",
            name=f"w{n}-{i}",
            labels=frozenset(spec.labels) | set(rng.sample(labels, rng.randint(0, 3))),
            capacity=Capacity(slots=slots, cpu=16.0, memory_mb=65536),
        )
        views.append(WorkerView(worker, used_slots=rng.randint(0, slots - 1)))
    return job, views


def check_scheduling_policy(policy: SchedulingPolicy, *, cases: int = 500, seed: int = 0) -> None:
    """Check that ``policy`` keeps the rules every scheduling policy must keep.

    On ``cases`` random jobs and candidate lists: ``choose`` is a plain (not async) method,
    returns None or one of the candidates it was given, does not change the candidates, and
    copes with a single candidate. A ``RankingPolicy`` (one with ``sort_key``) must choose the
    earliest candidate with the smallest key, every time.

    Raises:
        AssertionError: a rule was broken; the message says which, and on what.
    """
    choose = getattr(policy, "choose", None)
    assert callable(choose), f"{policy!r} has no choose() method"
    assert not inspect.iscoroutinefunction(choose), f"{policy!r}.choose must not be async"
    # a ranking policy promises that choose is the smallest sort_key (the scheduler relies on it)
    sort_key = ranking_key(policy)
    rng = random.Random(seed)
    for n in range(cases):
        job, candidates = _random_case(rng, n)
        if n % 10 == 0:
            candidates = candidates[:1]
        before = copy.copy(candidates)
        choice = choose(job, candidates)
        assert candidates == before, f"{policy!r} changed the candidates it was given"
        assert choice is None or any(choice is c for c in candidates), (
            f"{policy!r} chose {choice!r}, which is not one of the candidates "
            f"{[c.id for c in candidates]} for {job.id}"
        )
        if sort_key is not None:
            best = min(candidates, key=sort_key)
            assert choice is best, (
                f"{policy!r} ranks by sort_key but chose {getattr(choice, 'id', choice)!r}, "
                f"not {best.id!r}, the earliest candidate with the smallest key, "
                f"among {[c.id for c in candidates]} for {job.id}"
            )
