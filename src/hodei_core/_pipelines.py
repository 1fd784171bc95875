"""PipelineManager: pipelines, and the runs that execute them."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from functools import partial

from . import _runs as runs
from ._context import Context, cancel_job, check_name, new_id
from ._models import DEFAULT_TENANT, Job, Pipeline, Run, Step
from ._validation import check_pipeline
from .errors import JobAlreadyFinished
from .events import JobSubmitted, RunFinished

__all__ = ["PipelineManager"]

_new_job_id = partial(new_id, "job")


class PipelineManager:
    """Validates and keeps pipelines; starts runs and moves them on as their jobs end.

    A step's job is submitted when every step it depends on has succeeded; when one fails, is
    cancelled or times out, the steps that depend on it are skipped. A run ends when every step
    has.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def create(
        self, name: str, steps: Sequence[Step], *, tenant: str = DEFAULT_TENANT
    ) -> Pipeline:
        """Validate and store a pipeline.

        Raises:
            PipelineInvalid: with every problem found, each with its path.
        """
        check_name("tenant", tenant)
        check_pipeline(name, steps)
        pipeline = Pipeline(
            id=new_id("pip"), tenant=tenant, name=name, steps=steps, created_at=self._ctx.clock()
        )
        await self._ctx.store.add_pipeline(pipeline)
        return pipeline

    async def start_run(self, pipeline_id: str) -> Run:
        """Start a run of the pipeline: its steps without dependencies are queued at once.

        Raises:
            PipelineNotFound: there is no such pipeline.
        """
        pipeline = await self._ctx.store.get_pipeline(pipeline_id)
        run, jobs = runs.begin(pipeline, new_id("run"), self._ctx.clock(), _new_job_id)
        await self._ctx.store.add_run(run, jobs)
        await self._queued(jobs)
        await self._announce(run)
        return run

    async def job_ended(self, job: Job) -> None:
        """Move the job's run on: record the step's result, queue the steps now ready."""
        assert job.run_id is not None
        now = self._ctx.clock()
        run, jobs = await self._ctx.store.update_run(
            job.run_id, lambda r: runs.advance(r, job, now, _new_job_id)
        )
        await self._queued(jobs)
        await self._announce(run)

    async def cancel_run(self, run_id: str) -> Run:
        """Cancel a run: steps not started are cancelled, the jobs of running steps too.

        Raises:
            RunNotFound: there is no such run.
        """
        now = self._ctx.clock()
        live: list[str] = []

        def cancel(run: Run) -> tuple[Run, list[Job]]:
            new, ids = runs.request_cancel(run, now)
            live[:] = ids
            return new, []

        run, _ = await self._ctx.store.update_run(run_id, cancel)
        for job_id in live:
            # a job that ended on its own meanwhile keeps the result it had
            with contextlib.suppress(JobAlreadyFinished):
                await cancel_job(self._ctx, job_id)
        await self._announce(run)
        return await self._ctx.store.get_run(run_id)

    async def _queued(self, jobs: Sequence[Job]) -> None:
        if jobs:
            self._ctx.job_queued()
        for job in jobs:
            await self._ctx.bus.publish(JobSubmitted(job.id, job.tenant))

    async def _announce(self, run: Run) -> None:
        if run.state.is_terminal and run.finished_at is not None:
            await self._ctx.bus.publish(RunFinished(run.id, run.tenant, run.state))
