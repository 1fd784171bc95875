"""Orchestrator: the life of a job from submission to its end, as the server sees it."""

from __future__ import annotations

from collections.abc import Sequence

from . import _lifecycle as lifecycle
from ._context import Context, cancel_job, check_name, job_ended, new_id
from ._fast import constructor
from ._job_copy import maker
from ._models import DEFAULT_TENANT, Job, JobSpec, LogChunk, Outcome
from ._quota import QuotaManager
from ._validation import check_spec
from .events import JobStarted, JobSubmitted, LogAppended

__all__ = ["Orchestrator"]

# ``Job(id=…, tenant=…, spec=…, created_at=…)``, written out: every submission makes one
_new_job = maker(("id", "tenant", "spec", "created_at"))
# (and the events each job publishes: see ``_fast``)
_job_submitted = constructor(JobSubmitted)
_job_started = constructor(JobStarted)


class Orchestrator:
    """Submits jobs (quota, store, scheduler, event) and records what workers report.

    Every report is fenced by ``(job_id, attempt)`` and the reporting worker's id, and is
    idempotent, so an agent may resend after a network error.
    """

    def __init__(self, ctx: Context, quotas: QuotaManager) -> None:
        self._ctx = ctx
        self._quotas = quotas

    async def submit(
        self, spec: JobSpec, *, tenant: str = DEFAULT_TENANT, job_id: str | None = None
    ) -> Job:
        """Validate, admit and queue a job, then wake the scheduler.

        Raises:
            JobSpecInvalid: the spec is not runnable, with every problem.
            ValidationError: the tenant name is not usable.
            QuotaExceeded: the tenant is over its quota.
        """
        check_spec(spec)
        check_name("tenant", tenant)
        now = self._ctx.clock()
        job = _new_job(job_id or new_id("job"), tenant, spec, now)
        await self._ctx.store.add_job(job, self._quotas.admission(tenant, now))
        self._ctx.job_queued()
        await self._ctx.bus.publish(_job_submitted(job.id, tenant))
        return job

    async def start(self, worker_id: str | None, job_id: str, attempt: int) -> Job:
        """The worker started the attempt.

        Raises:
            JobNotFound, StaleAttempt, JobAlreadyFinished, InvalidTransition.
        """
        now = self._ctx.clock()
        before, after = await self._ctx.store.update_job(
            job_id, lambda j: lifecycle.start(j, attempt, worker_id, now)
        )
        if before is not after:
            assert after.worker_id is not None
            await self._ctx.bus.publish(
                _job_started(after.id, after.tenant, after.attempt, after.worker_id)
            )
        return after

    async def append_logs(
        self, worker_id: str | None, job_id: str, attempt: int, chunks: Sequence[LogChunk]
    ) -> None:
        """Store log chunks of the current attempt (a resend of a stored ``seq`` is ignored).

        Raises:
            JobNotFound, StaleAttempt.
        """
        if not chunks:
            return
        store = self._ctx.store
        job = await store.get_job(job_id)
        lifecycle.check_fence(job, attempt, worker_id)
        await store.append_logs(job_id, attempt, chunks)
        last = max(c.seq for c in chunks)
        await self._ctx.bus.publish(LogAppended(job_id, job.tenant, attempt, last))

    async def finish(
        self,
        worker_id: str | None,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        chunks: Sequence[LogChunk] = (),
    ) -> Job:
        """Record how an attempt ended, with its last log chunks.

        Raises:
            JobNotFound, StaleAttempt, InvalidTransition.
        """
        now = self._ctx.clock()
        # the last output goes with the end, in one store operation fenced by the change
        before, after = await self._ctx.store.update_job(
            job_id, lambda j: lifecycle.finish(j, attempt, worker_id, outcome, now), chunks
        )
        if chunks:
            last = max(c.seq for c in chunks)
            await self._ctx.bus.publish(LogAppended(job_id, before.tenant, attempt, last))
        if before is not after:
            self._ctx.wake_scheduler()  # a slot is free
            await job_ended(self._ctx, after)
        return after

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job (see ``hodei_core.Hodei.cancel``).

        Raises:
            JobNotFound, JobAlreadyFinished.
        """
        return await cancel_job(self._ctx, job_id)
