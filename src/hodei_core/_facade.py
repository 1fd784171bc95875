"""Hodei: the one object a user holds, assembling the services over a store and a bus."""

from __future__ import annotations

import builtins
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import trio

from ._context import Clock, Context
from ._control_plane import InProcessControlPlane
from ._models import (
    DEFAULT_TENANT,
    Job,
    JobSpec,
    JobState,
    LogChunk,
    Pipeline,
    Run,
    Step,
    TenantQuota,
    Worker,
)
from ._orchestrator import Orchestrator
from ._pipelines import PipelineManager
from ._quota import QuotaManager
from ._scheduler import Scheduler
from ._workers import WorkerManagement
from .policies import LeastLoaded
from .ports import EventBus, JobQuery, SchedulingPolicy, Store

__all__ = ["Hodei"]

_T = TypeVar("_T")

# Waiters re-read the store this often in case the bus dropped the event they wait for.
_RECHECK_S = 1.0


class Hodei:
    """The engine: submit and follow jobs, pipelines and runs; manage workers.

    Build it with a store and a bus (see ``hodei_backends.open_embedded`` for the usual way),
    then run its background loops in a nursery you own::

        hodei = Hodei(store=store, bus=bus, policy=LeastLoaded())
        async with trio.open_nursery() as nursery:
            await nursery.start(hodei.run)
            job = await hodei.submit(JobSpec(command=["true"]))

    Args:
        store: where state lives.
        bus: how the parts hear of changes.
        policy: ranks workers for each job (default ``LeastLoaded``).
        quotas: per-tenant quotas; ``default_quota`` applies to the others.
        clock: wall-clock time for timestamps (tests pass one that follows trio's clock).
        lost_after_s: silence after which a worker is lost and its jobs go back to the queue.
        schedule_interval_s: how often the scheduler looks at the queue without being woken.
        fail_unschedulable: fail at once a job that no registered worker could ever run (for a
            fixed fleet such as an embedded one), rather than keep it queued for a worker that
            may still come.
    """

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        policy: SchedulingPolicy | None = None,
        quotas: Mapping[str, TenantQuota] | None = None,
        default_quota: TenantQuota | None = None,
        clock: Clock = time.time,
        lost_after_s: float = 30.0,
        schedule_interval_s: float = 1.0,
        fail_unschedulable: bool = False,
    ) -> None:
        self.store = store
        self.bus = bus
        self._ctx = ctx = Context(store=store, bus=bus, clock=clock)
        self.quotas = QuotaManager(quotas, default_quota)
        self.scheduler = Scheduler(
            ctx,
            policy if policy is not None else LeastLoaded(),
            self.quotas,
            interval_s=schedule_interval_s,
            fail_unschedulable=fail_unschedulable,
        )
        self.orchestrator = Orchestrator(ctx, self.quotas)
        self.workers = WorkerManagement(ctx, lost_after_s=lost_after_s)
        self.pipelines = PipelineManager(ctx)
        ctx.wake_scheduler = self.scheduler.wake
        ctx.job_queued = self.scheduler.job_queued
        ctx.run_job_ended = self.pipelines.job_ended

    @property
    def clock(self) -> Clock:
        """The wall clock the engine stamps times with."""
        return self._ctx.clock

    def __repr__(self) -> str:
        return f"<Hodei store={self.store!r} bus={self.bus!r} policy={self.scheduler.policy!r}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the scheduler and the reaper of lost workers until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.scheduler.run)
            await nursery.start(self.workers.run_reaper)
            task_status.started()

    def control_plane(self) -> InProcessControlPlane:
        """A ``ControlPlane`` for workers running in this process."""
        return InProcessControlPlane(self.orchestrator, self.workers, self.bus)

    async def _wait_until(
        self,
        topic: str,
        read: Callable[[], Awaitable[_T]],
        done: Callable[[_T], bool],
        timeout_s: float | None,
    ) -> _T:
        # Subscribed first, then read: the event cannot slip between the two. The store is the
        # truth and the bus may drop events, so it is read again now and then regardless.
        with trio.fail_after(math.inf if timeout_s is None else timeout_s):
            async with self.bus.subscribe(topic) as events:
                while True:
                    value = await read()
                    if done(value):
                        return value
                    with trio.move_on_after(_RECHECK_S):
                        await events.receive()

    # -- jobs --

    async def submit(self, spec: JobSpec, *, tenant: str = DEFAULT_TENANT) -> Job:
        """Queue a job; returns it as stored (state ``queued``).

        Raises:
            JobSpecInvalid: the spec cannot run, with every problem.
            QuotaExceeded: the tenant is over its quota; try again after ``retry_after_s``.
        """
        return await self.orchestrator.submit(spec, tenant=tenant)

    async def get(self, job_id: str) -> Job:
        """The job as it is now.

        Raises:
            JobNotFound: there is no such job.
        """
        return await self.store.get_job(job_id)

    async def list(
        self,
        *,
        tenant: str | None = None,
        state: JobState | None = None,
        worker_id: str | None = None,
        run_id: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> builtins.list[Job]:
        """Jobs matching every filter given, oldest first."""
        query = JobQuery(
            tenant=tenant,
            states=None if state is None else frozenset({state}),
            worker_id=worker_id,
            run_id=run_id,
            offset=offset,
            limit=limit,
        )
        return await self.store.list_jobs(query)

    async def wait(self, job_id: str, timeout_s: float | None = None) -> Job:
        """Wait until the job has finished, and return it.

        Raises:
            JobNotFound: there is no such job.
            trio.TooSlowError: ``timeout_s`` passed first.
        """
        job = await self.store.get_job(job_id)
        return await self._wait_until(
            f"jobs.{job.tenant}.{job_id}.finished",
            lambda: self.store.get_job(job_id),
            lambda job: job.is_finished,
            timeout_s,
        )

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: at once if it has not started, else its worker stops the process
        (the job is ``cancelling`` until the worker confirms).

        Raises:
            JobNotFound: there is no such job.
            JobAlreadyFinished: the job had already finished.
        """
        return await self.orchestrator.cancel(job_id)

    async def logs(
        self, job_id: str, *, attempt: int | None = None, from_seq: int = 0
    ) -> builtins.list[LogChunk]:
        """The log chunks of an attempt (the current one by default), in order.

        Raises:
            JobNotFound: there is no such job.
        """
        if attempt is None:
            attempt = (await self.store.get_job(job_id)).attempt
        return await self.store.read_logs(job_id, attempt, from_seq)

    async def log_text(self, job_id: str, *, attempt: int | None = None) -> str:
        """The output of an attempt (the current one by default), stdout and stderr
        interleaved as they were produced."""
        return "".join(chunk.data for chunk in await self.logs(job_id, attempt=attempt))

    async def follow_logs(
        self, job_id: str, *, attempt: int | None = None, from_seq: int = 0
    ) -> AsyncIterator[LogChunk]:
        """Every chunk of an attempt from ``from_seq`` on, as it arrives, until the job ends.

        Raises:
            JobNotFound: there is no such job.
        """
        job = await self.store.get_job(job_id)
        attempt = job.attempt if attempt is None else attempt
        async with self.bus.subscribe(f"jobs.{job.tenant}.{job_id}.*") as events:
            while True:
                chunks = await self.store.read_logs(job_id, attempt, from_seq)
                for chunk in chunks:
                    yield chunk
                    from_seq = chunk.seq + 1
                job = await self.store.get_job(job_id)
                if job.is_finished or job.attempt != attempt:
                    for chunk in await self.store.read_logs(job_id, attempt, from_seq):
                        yield chunk
                    return
                with trio.move_on_after(_RECHECK_S):
                    await events.receive()

    # -- pipelines and runs --

    async def create_pipeline(
        self, name: str, steps: Sequence[Step], *, tenant: str = DEFAULT_TENANT
    ) -> Pipeline:
        """Validate and store a pipeline.

        Raises:
            PipelineInvalid: with every problem found, each with its path.
        """
        return await self.pipelines.create(name, steps, tenant=tenant)

    async def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """The pipeline with this id (raises ``PipelineNotFound``)."""
        return await self.store.get_pipeline(pipeline_id)

    async def list_pipelines(self, *, tenant: str | None = None) -> builtins.list[Pipeline]:
        """Pipelines, oldest first."""
        return await self.store.list_pipelines(tenant)

    async def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline; its runs stay (raises ``PipelineNotFound``)."""
        await self.store.delete_pipeline(pipeline_id)

    async def start_run(self, pipeline_id: str) -> Run:
        """Run a pipeline (raises ``PipelineNotFound``)."""
        return await self.pipelines.start_run(pipeline_id)

    async def get_run(self, run_id: str) -> Run:
        """The run with this id (raises ``RunNotFound``)."""
        return await self.store.get_run(run_id)

    async def wait_run(self, run_id: str, timeout_s: float | None = None) -> Run:
        """Wait until the run has finished, and return it.

        Raises:
            RunNotFound: there is no such run.
            trio.TooSlowError: ``timeout_s`` passed first.
        """
        run = await self.store.get_run(run_id)
        return await self._wait_until(
            f"runs.{run.tenant}.{run_id}.finished",
            lambda: self.store.get_run(run_id),
            lambda run: run.state.is_terminal,
            timeout_s,
        )

    async def cancel_run(self, run_id: str) -> Run:
        """Cancel a run and its live jobs (raises ``RunNotFound``)."""
        return await self.pipelines.cancel_run(run_id)

    # -- workers --

    async def list_workers(self) -> builtins.list[Worker]:
        """Every worker, in the order they first registered."""
        return await self.workers.list_all()

    async def get_worker(self, worker_id: str) -> Worker:
        """The worker with this id (raises ``WorkerNotFound``)."""
        return await self.workers.get(worker_id)

    async def drain_worker(self, worker_id: str) -> Worker:
        """Give the worker no new jobs; it goes offline once its jobs have finished."""
        return await self.workers.drain(worker_id)
