"""What every service shares: the ports, the clock, and the few operations several need."""

from __future__ import annotations

import functools
import itertools
import os
import re
import time
from collections.abc import Awaitable, Callable

import attrs

from . import _lifecycle as lifecycle
from ._fast import constructor
from ._handoff import Handoff
from ._models import Job, JobState
from .errors import Problem, ValidationError
from .events import JobCancelRequested, JobFinished
from .ports import EventBus, Store

__all__ = ["Clock", "Context", "cancel_job", "check_name", "job_ended", "new_id"]

#: Wall-clock time in seconds since the epoch. Tests pass one that follows trio's clock.
Clock = Callable[[], float]

# Names end up inside event topics (dot-separated) and URLs.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")

# (read once: ``JobState.QUEUED`` goes through the enum metaclass's slow hook in CPython 3.11)
_QUEUED = JobState.QUEUED
# every attempt of every job ends with one (see ``_fast``)
_job_finished = constructor(JobFinished)


class _Ids:
    """Ids such as ``job-3f9a0c41d2b7000004d2``: 48 random bits drawn once per process, then a
    counter. Unique across processes sharing a store (the random part) and within one (the
    counter), at a fraction of a random draw per id; a child process after ``fork`` draws its
    own random part."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._base = os.urandom(6).hex()
        self._count = itertools.count()

    def new(self, prefix: str) -> str:
        # (past 2**32 ids the counter just grows a digit: ids stay unique)
        return f"{prefix}-{self._base}{next(self._count):08x}"


_ids = _Ids()


def new_id(prefix: str) -> str:
    """A fresh id such as ``job-3f9a0c41d2b7000004d2`` (see ``_Ids``)."""
    return _ids.new(prefix)


@functools.lru_cache(maxsize=1024)
def _name_ok(name: str) -> bool:
    # a handful of tenants and workers submit and report over and over: remember the answer
    return _NAME.match(name) is not None


def check_name(kind: str, name: str) -> None:
    """Refuse a tenant or worker name that could not be used in a topic.

    Raises:
        ValidationError: the name is empty, too long or has characters other than letters,
            digits, ``_`` and ``-``.
    """
    if not _name_ok(name):
        raise ValidationError([Problem(kind, f"{name!r} must be 1-64 letters, digits, '_' or '-'")])


async def _nothing(job: Job) -> None:
    pass


@attrs.define
class Context:
    """The ports and settings the services share; built once by ``Hodei``, which then plugs
    in the hooks that let services reach each other without importing each other."""

    store: Store
    bus: EventBus
    clock: Clock = time.time
    #: the scheduler's wake-up
    wake_scheduler: Callable[[], None] = lambda: None
    #: the scheduler's wake-up when a job was queued: its pass need not ask whether any is
    job_queued: Callable[[], None] = lambda: None
    #: told of every job of a pipeline run that reached a terminal state
    run_job_ended: Callable[[Job], Awaitable[None]] = _nothing
    #: the jobs the scheduler just assigned, for the polls of their workers
    handoff: Handoff = attrs.Factory(Handoff)


async def job_ended(ctx: Context, job: Job) -> None:
    """Announce that an attempt of ``job`` ended (terminal, or queued again) and let the
    pipeline run it belongs to advance."""
    await ctx.bus.publish(_job_finished(job))
    if job.state is _QUEUED:
        ctx.job_queued()
    elif job.run_id is not None:
        await ctx.run_job_ended(job)


async def cancel_job(ctx: Context, job_id: str) -> Job:
    """Cancel a job: at once if no process runs it, else ask its worker to stop it.

    Raises:
        JobNotFound: there is no such job.
        JobAlreadyFinished: the job had already finished.
    """
    now = ctx.clock()
    before, after = await ctx.store.update_job(job_id, lambda j: lifecycle.request_cancel(j, now))
    if before is after:
        return after
    if after.state is JobState.CANCELLING:
        assert after.worker_id is not None
        await ctx.bus.publish(
            JobCancelRequested(after.id, after.tenant, after.attempt, after.worker_id)
        )
    else:
        if before.state is JobState.ASSIGNED and before.worker_id is not None:
            # the worker may have it in hand already; tell it, and free the slot for others
            await ctx.bus.publish(
                JobCancelRequested(before.id, before.tenant, before.attempt, before.worker_id)
            )
            ctx.wake_scheduler()
        await job_ended(ctx, after)
    return after
