"""Helpers the store and event bus contract suites share: sample objects, quick setup steps,
and a tiny ``pytest.raises`` (the suites must not import pytest)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Generic, TypeVar

import attrs

from ..._lifecycle import start, transition_worker
from ..._models import (
    Capacity,
    Job,
    JobSpec,
    Pipeline,
    Resources,
    Run,
    Step,
    StepRun,
    StepState,
    TenantUsage,
    Worker,
    WorkerRegistration,
    WorkerState,
)
from ...ports import Assignment, Store

#: A wall-clock time to build timestamps from; any value works, a round one reads well.
_T0 = 1_000_000.0

#: What an ``open_store`` fixture returns: each call opens another store on the same location
#: (the test's own, fresh and empty when the test starts), as an async context manager that
#: closes that store.
StoreOpener = Callable[[], AbstractAsyncContextManager[Store]]


class _StoreCapabilities:
    """What a store offers beyond the contract; the capability suites set these to True.

    One base for ``StoreContract`` and the capability suites, so that whichever order a test
    class lists them in, the suite it includes is the one that sets the attribute.
    """

    durable: bool = False
    cross_process: bool = False


class _BusCapabilities:
    """What a bus offers beyond the contract (as ``_StoreCapabilities`` for stores):
    ``CrossProcessBusContract`` sets ``cross_process``; ``durable`` is informative."""

    durable: bool = False
    cross_process: bool = False


_E = TypeVar("_E", bound=BaseException)


class _Caught(Generic[_E]):
    """What ``_raises`` caught; ``value`` is only there once the block has raised."""

    def __init__(self) -> None:
        self._value: _E | None = None

    @property
    def value(self) -> _E:
        """The exception the block raised."""
        assert self._value is not None, "the block has not raised (yet)"
        return self._value

    def set(self, value: _E) -> None:
        """Record the exception the block raised."""
        self._value = value


@contextmanager
def _raises(expected: type[_E]) -> Iterator[_Caught[_E]]:
    """Assert that the block raises ``expected`` (a tiny ``pytest.raises``, without pytest).

    Other exceptions go through untouched, so a failing adapter shows its real error.
    """
    caught: _Caught[_E] = _Caught()
    try:
        yield caught
    except expected as exc:
        caught.set(exc)
    else:
        raise AssertionError(f"expected {expected.__name__} to be raised")


class _Boom(Exception):
    """Raised by change functions to abort an operation; only the suite raises it."""


def _ids(items: Iterable[Job | Worker | Pipeline | Run]) -> list[str]:
    return [item.id for item in items]


def _by_id(jobs: Iterable[Job]) -> dict[str, Job]:
    return {job.id: job for job in jobs}


def _job(
    job_id: str,
    created_at: float = _T0,
    *,
    tenant: str = "t1",
    priority: int = 0,
    labels: Iterable[str] = (),
    cpu: float = 0.0,
    memory_mb: int = 0,
    retries: int = 0,
    run_id: str | None = None,
    step: str | None = None,
) -> Job:
    spec = JobSpec(
        command=("true",),
        labels=frozenset(labels),
        resources=Resources(cpu, memory_mb),
        retries=retries,
        priority=priority,
    )
    return Job(id=job_id, tenant=tenant, spec=spec, created_at=created_at, run_id=run_id, step=step)


def _pipeline(pipeline_id: str, *, tenant: str = "t1", created_at: float = _T0) -> Pipeline:
    return Pipeline(
        id=pipeline_id,
        tenant=tenant,
        name=f"pipeline {pipeline_id}",
        steps=(
            Step(name="build", spec=JobSpec(script="make")),
            Step(name="test", spec=JobSpec(command=("make", "test")), depends_on=("build",)),
        ),
        created_at=created_at,
    )


def _run(run_id: str, pipeline: Pipeline, *, created_at: float = _T0) -> Run:
    return Run(
        id=run_id,
        pipeline=pipeline,
        steps=(
            StepRun("build", StepState.RUNNING, job_id=f"{run_id}-build"),
            StepRun("test"),
        ),
        created_at=created_at,
    )


def _step_job(run: Run, step: str, created_at: float = _T0) -> Job:
    return _job(f"{run.id}-{step}", created_at, tenant=run.tenant, run_id=run.id, step=step)


def _bump(job: Job) -> Job:
    """A read-modify-write change: the attempt one up (updates that lose one show)."""
    return attrs.evolve(job, attempt=job.attempt + 1)


def _keep(job: Job) -> Job:
    """A ``release`` that leaves a job as it is (for workers that hold none)."""
    return job


async def _register(
    store: Store,
    name: str,
    *,
    labels: Iterable[str] = (),
    slots: int = 4,
    cpu: float | None = None,
    memory_mb: int | None = None,
    now: float = _T0,
) -> Worker:
    # Ids differ from names on purpose, so that an adapter mixing them up fails.
    registration = WorkerRegistration(
        name=name, labels=frozenset(labels), capacity=Capacity(slots, cpu, memory_mb)
    )
    worker, created, _ = await store.register_worker(registration, f"id-{name}", now, _keep)
    assert created, f"registering the new name {name!r} did not create a worker"
    return worker


async def _assign(store: Store, job_id: str, worker_id: str, now: float = _T0) -> Job:
    job = await store.get_job(job_id)
    assigned = await store.assign_jobs([Assignment(job_id, job.attempt, worker_id)], now)
    assert _ids(assigned) == [job_id], f"could not assign {job_id} to {worker_id}: {assigned}"
    return assigned[0]


async def _start(store: Store, job_id: str, now: float = _T0) -> Job:
    _, after = await store.update_job(job_id, lambda j: start(j, j.attempt, j.worker_id, now))
    return after


async def _set_worker_state(store: Store, worker_id: str, state: WorkerState) -> Worker:
    _, after = await store.update_worker(worker_id, lambda w: transition_worker(w, state))
    return after


def _recording_admit(seen: list[TenantUsage]) -> Callable[[TenantUsage], None]:
    # The store may call ``admit`` more than once (e.g. when it retries a transaction), so the
    # tests look at the last call only.
    def admit(usage: TenantUsage) -> None:
        seen.append(usage)

    return admit
