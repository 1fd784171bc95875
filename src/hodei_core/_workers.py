"""WorkerManagement: registration, heartbeats, draining, and the reaper of silent workers."""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from typing import cast

import attrs
import trio

from . import _lifecycle as lifecycle
from ._context import Context, check_name, job_ended, new_id
from ._models import Job, JobState, Worker, WorkerRegistration, WorkerState
from .errors import StorageError
from .events import WorkerDrainRequested, WorkerLeft, WorkerLost, WorkerRegistered
from .ports import Instructions

log = logging.getLogger("hodei.workers")

__all__ = ["WorkerManagement"]

# Enum members read once here: in CPython 3.11 ``JobState.X`` goes through the enum
# metaclass's ``__getattr__`` hook (~0.15 us, ten times a global), and every poll reads these.
_ASSIGNED, _CANCELLING = JobState.ASSIGNED, JobState.CANCELLING
_DRAINING = WorkerState.DRAINING


class WorkerManagement:
    """Keeps the fleet's records, and tells each worker what to do.

    A worker not heard from for ``lost_after_s`` is marked lost by ``run_reaper``; its jobs go
    back to the queue with ``attempt + 1`` while retries remain, else fail ``worker_lost``.
    """

    def __init__(self, ctx: Context, *, lost_after_s: float = 30.0) -> None:
        self._ctx = ctx
        self.lost_after_s = lost_after_s
        # when the quietest worker seen alive by the last ``reap`` becomes lost (clock time)
        self._next_loss = -math.inf

    async def register(
        self, registration: WorkerRegistration, running: Collection[tuple[str, int]] = ()
    ) -> tuple[Worker, bool]:
        """Create the worker, or update the one with this name; returns it and whether it is new.

        An agent registers when it starts, and again when the server no longer knows its token;
        it says which ``(job_id, attempt)`` pairs it still runs. The worker's other active jobs
        are run by no one any more: they go back to the queue (or fail ``worker_lost``), as a
        lost worker's do.

        Raises:
            ValidationError: the name is not usable.
        """
        check_name("name", registration.name)
        now = self._ctx.clock()
        kept = frozenset(running)

        def release(job: Job) -> Job:
            return job if (job.id, job.attempt) in kept else lifecycle.lose(job, now)

        worker, created, changed = await self._ctx.store.register_worker(
            registration, new_id("wrk"), now, release
        )
        await self._ctx.bus.publish(WorkerRegistered(worker.id))
        for job in changed:
            if (job.id, job.attempt) not in kept:
                await job_ended(self._ctx, job)
        self._ctx.wake_scheduler()
        return worker, created

    async def get(self, worker_id: str) -> Worker:
        """The worker with this id.

        Raises:
            WorkerNotFound: there is none.
        """
        return await self._ctx.store.get_worker(worker_id)

    async def list_all(self) -> list[Worker]:
        """Every worker, in the order they first registered."""
        return await self._ctx.store.list_workers()

    async def heartbeat(self, worker_id: str, running: Collection[tuple[str, int]]) -> Instructions:
        """Note that the worker is alive; returns what it must cancel and whether to drain.

        A worker that was marked lost and speaks again is back online; the jobs it still runs
        were given to others, so it is told to cancel them.

        Raises:
            WorkerNotFound: there is no such worker.
        """
        now = self._ctx.clock()

        def beat(worker: Worker) -> Worker:
            if worker.state in (WorkerState.LOST, WorkerState.OFFLINE):
                return lifecycle.transition_worker(worker, WorkerState.ONLINE, last_heartbeat=now)
            return attrs.evolve(worker, last_heartbeat=now)

        before, after = await self._ctx.store.update_worker(worker_id, beat)
        if before.state is not after.state:
            self._ctx.wake_scheduler()
        return await self.instructions(after, running, include_jobs=False)

    async def touch(self, worker_ids: Collection[str]) -> None:
        """Note that these workers are alive, as a heartbeat would, without anything else a
        heartbeat does: for a server that knows them alive otherwise (their long-poll is
        waiting on an open connection), in one store write for all. Lost, offline and unknown
        workers are left as they are."""
        await self._ctx.store.touch_workers(worker_ids, self._ctx.clock())

    async def instructions(
        self, worker: Worker, running: Collection[tuple[str, int]], *, include_jobs: bool = True
    ) -> Instructions:
        """What ``worker``, which runs ``running`` ``(job_id, attempt)`` pairs, must do now:
        start the jobs assigned to it that it does not run yet, and stop the ones it runs that
        are being cancelled or no longer its own.

        Only what the worker does not know yet is said, so that a worker polling in a loop is
        not woken again and again by the same instruction.
        """
        held = set(running)
        if not include_jobs and not held:
            # a heartbeat of an idle worker: nothing to stop, and no job to read
            return Instructions(drain=worker.state is _DRAINING)
        active = await self._ctx.store.active_jobs(worker.id)
        jobs = []
        current = {}
        for job in active:
            key = (job.id, job.attempt)
            current[key] = job
            if include_jobs and job.state is _ASSIGNED and key not in held:
                jobs.append(job)
        cancel = {key for key in held if key not in current or current[key].state is _CANCELLING}
        return Instructions(
            jobs=tuple(jobs),
            cancel=frozenset(cancel),
            drain=worker.state is _DRAINING,
        )

    def take_handed(self, assigned: Collection[tuple[str, int]]) -> list[Job] | None:
        """The jobs of the ``(job_id, attempt)`` pairs ``assigned``, as this process's scheduler
        assigned them, taken from the handoff (``_handoff``); None if one is not there (another
        process assigned it, say): then the store has them."""
        take = self._ctx.handoff.take
        jobs = [take(job_id, attempt) for job_id, attempt in assigned]
        return None if any(job is None for job in jobs) else cast("list[Job]", jobs)

    async def drain(self, worker_id: str) -> Worker:
        """Stop giving the worker new jobs; it finishes what it runs, then goes offline.

        Raises:
            WorkerNotFound: there is no such worker.
        """

        def drain(worker: Worker) -> Worker:
            if worker.state is WorkerState.DRAINING:
                return worker
            return lifecycle.transition_worker(worker, WorkerState.DRAINING)

        before, after = await self._ctx.store.update_worker(worker_id, drain)
        if before is not after:
            await self._ctx.bus.publish(WorkerDrainRequested(worker_id))
        return after

    async def leave(self, worker_id: str) -> Worker:
        """The worker goes offline on purpose; jobs it still had go back to the queue (or fail
        ``worker_lost`` when their retries are spent), as a lost worker's do.

        Raises:
            WorkerNotFound: there is no such worker.
        """
        now = self._ctx.clock()
        worker, released = await self._ctx.store.leave_worker(
            worker_id, lambda j: lifecycle.lose(j, now)
        )
        await self._ctx.bus.publish(WorkerLeft(worker_id))
        for job in released:
            await job_ended(self._ctx, job)
        return worker

    async def reap(self) -> list[str]:
        """Mark every silent worker lost and send its jobs back; returns their ids."""
        now = self._ctx.clock()
        stale_before = now - self.lost_after_s
        lost = []
        quietest = math.inf
        for worker in await self._ctx.store.list_workers():
            if worker.state not in (WorkerState.ONLINE, WorkerState.DRAINING):
                continue
            if worker.last_heartbeat >= stale_before:
                quietest = min(quietest, worker.last_heartbeat)
                continue
            result = await self._ctx.store.lose_worker(
                worker.id, stale_before, lambda j: lifecycle.lose(j, now)
            )
            if result is None:
                continue  # it spoke up meanwhile
            _, jobs = result
            lost.append(worker.id)
            await self._ctx.bus.publish(WorkerLost(worker.id, tuple(j.id for j in jobs)))
            for job in jobs:
                await job_ended(self._ctx, job)
        self._next_loss = quietest + self.lost_after_s
        return lost

    async def run_reaper(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Reap silent workers until cancelled: when the quietest worker is due to be lost,
        and at least four times per ``lost_after_s``.

        A check that fails on a store error is logged, and the next one comes as usual.
        """
        task_status.started()
        most, least = self.lost_after_s / 4, self.lost_after_s / 20
        while True:
            # A worker that dies is lost ``lost_after_s`` after its last sign of life, not up to
            # a quarter later; the checks at least every quarter find workers that other
            # processes registered, and the floor keeps a fleet whose signs of life fall just
            # at the deadline from making this a busy loop.
            due = self._next_loss - self._ctx.clock()
            await trio.sleep(min(max(due, least), most))
            try:
                await self.reap()
            except StorageError as error:
                # a store that fails is asked again at the slow pace, not at the floor
                self._next_loss = self._ctx.clock() + most
                log.warning("looking for lost workers failed, again in %gs: %s", most, error)
