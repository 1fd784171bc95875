"""Scheduler: places queued jobs on workers with the scheduling policy."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import outcome
import trio

from . import _lifecycle as lifecycle
from ._context import Context, job_ended
from ._fast import constructor
from ._models import Job, WorkerView
from ._planning import plan
from ._quota import QuotaManager
from .errors import StorageError
from .events import JobAssigned
from .ports import Assignment, SchedulingPolicy

__all__ = ["Scheduler"]

log = logging.getLogger("hodei.scheduler")

# The pause after a pass failed on a store error (doubled at each failure in a row, up to the
# interval of passes at rest).
_FIRST_PAUSE_S = 0.05

# every assignment is announced with one (see ``_fast``)
_job_assigned = constructor(JobAssigned)

# Queued jobs a pass reads beyond twice the free slots (see ``schedule_once``).
_WINDOW_MARGIN = 32

A = TypeVar("A")
B = TypeVar("B")


class Scheduler:
    """Runs scheduling passes when woken (a submit, freed capacity, a new worker) and every
    ``interval_s`` as a safety net.

    A pass reads up to ``batch`` queued jobs and the online workers once, lets the policy pick
    among the workers that fit each job, and writes all the assignments in one store call; the
    store re-checks each one, so a pass racing another process cannot overfill a worker.
    """

    def __init__(
        self,
        ctx: Context,
        policy: SchedulingPolicy,
        quotas: QuotaManager,
        *,
        interval_s: float = 1.0,
        batch: int = 1000,
        fail_unschedulable: bool = False,
        coalesce_s: float = 0.001,
    ) -> None:
        self._ctx = ctx
        self.policy = policy
        self._quotas = quotas
        self._interval_s = interval_s
        self._batch = batch
        self._fail_unschedulable = fail_unschedulable
        self._coalesce_s = coalesce_s
        self._wake = trio.Event()
        self._queued = False  # a job was queued since the last pass began
        # how much of the queue the last pass read (0: it found no room)
        self._last_window = _WINDOW_MARGIN
        self.passes = 0

    def wake(self) -> None:
        """Ask for a pass soon. Cheap; many wakes before the pass make one pass."""
        self._wake.set()

    def job_queued(self) -> None:
        """``wake``, saying that a job was queued: the pass can skip asking the store whether
        the queue is empty, one store call less between a submit and its assignment."""
        self._queued = True
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Schedule until cancelled."""
        task_status.started()
        last_pass = -math.inf
        failures = 0  # passes failed in a row
        while True:
            with trio.move_on_after(self._interval_s):
                await self._wake.wait()
            # Under load, wait a moment so that what arrives meanwhile (submissions, freed
            # slots) is placed in one pass: a pass costs about the same for one job or fifty.
            # At rest the first job is placed at once.
            await trio.sleep_until(last_pass + self._coalesce_s)
            self._wake = trio.Event()
            job_queued, self._queued = self._queued, False
            last_pass = trio.current_time()
            try:
                while await self.schedule_once(job_queued=job_queued) >= self._batch:
                    job_queued = False  # a full batch was placed: there may be more
            except StorageError as error:
                # The store failed (a database restarting, a deadlock met too often): the
                # pass is lost, not the engine. Jobs stay queued; a pass after a pause reads
                # everything again, the pause doubling while the store keeps failing.
                failures += 1
                pause = min(self._interval_s, _FIRST_PAUSE_S * 2 ** min(failures - 1, 16))
                log.warning("a scheduling pass failed, the next in %.2fs: %s", pause, error)
                await trio.sleep(pause)
                self.job_queued()
            else:
                failures = 0

    async def schedule_once(self, *, job_queued: bool = False) -> int:
        """One pass; returns how many jobs were assigned. ``job_queued``: a job was queued since
        the last pass (so the queue is most likely not empty)."""
        self.passes += 1
        store = self._ctx.store
        # an empty queue is the common case at rest (the safety-net pass every interval_s):
        # one indexed read answers it, where reading a large idle fleet would not be cheap
        if not job_queued and not await store.queued_jobs(1):
            return 0
        queued: Sequence[Job] | None = None
        guess = self._last_window
        if job_queued and guess:
            # A job was queued and the last pass found room: the workers and the queue are read
            # side by side, one round trip on a store that batches its reads (a submit on an
            # idle fleet: the dispatch latency). On a full fleet the last pass found no room,
            # and the queue is not read for nothing.
            views, queued = await _side_by_side(
                lambda: store.worker_views(with_room=True), lambda: store.queued_jobs(guess)
            )
        else:
            views = await store.worker_views(with_room=True)
        free = sum(view.free_slots for view in views)
        if not views:
            # No room anywhere: the queue waits for the next wake. (A job no worker could ever
            # run is failed by the first pass that finds room, and finds it does not fit.)
            self._last_window = 0
            return 0
        # Read no more of the queue than the free slots could take (and a margin for jobs the
        # free workers cannot run): on a busy fleet most passes place a few jobs, and reading
        # the whole batch each time cost more than the rest of the pass. Only when that window
        # turns out to be blocked is the queue read as deep as ``batch``.
        window = self._last_window = min(self._batch, 2 * free + _WINDOW_MARGIN)
        if queued is None or len(queued) == guess < window:
            queued = await store.queued_jobs(window)
        else:
            queued = queued[:window]
        if not queued:
            return 0
        running = await store.active_by_tenant() if self._quotas.limits_running else None
        homeless: list[Job] = []
        assignments = self._plan(queued, views, free, running, homeless)
        if len(assignments) < free and len(queued) == window < self._batch:
            queued = await store.queued_jobs(self._batch)
            homeless.clear()
            if running is not None:
                running = await store.active_by_tenant()
            assignments = self._plan(queued, views, free, running, homeless)
        if self._fail_unschedulable and homeless:
            await self._fail_impossible(homeless)
        if not assignments:
            return 0
        assigned = await store.assign_jobs(assignments, self._ctx.clock())
        handoff = self._ctx.handoff
        for job in assigned:
            assert job.worker_id is not None
            handoff.put(job)
            await self._ctx.bus.publish(
                _job_assigned(job.id, job.tenant, job.attempt, job.worker_id)
            )
        return len(assigned)

    def _plan(
        self,
        queued: Sequence[Job],
        views: Sequence[WorkerView],
        free: int,
        running: dict[str, int] | None,
        homeless: list[Job],
    ) -> list[Assignment]:
        return plan(
            queued,
            views,
            free=free,
            policy=self.policy,
            quotas=self._quotas,
            running=running,
            homeless=homeless,
        )

    async def _fail_impossible(self, homeless: Sequence[Job]) -> None:
        # Only for a fixed fleet (embedded engines): a job no worker could ever run would
        # otherwise wait forever.
        now = self._ctx.clock()
        idle = [WorkerView(w) for w in await self._ctx.store.list_workers()]
        # once per kind of job: a busy fleet leaves hundreds of alike jobs without room
        possible: dict[tuple[frozenset[str], object], bool] = {}
        for job in homeless:
            key = (job.spec.labels, job.spec.resources)
            fits = possible.get(key)
            if fits is None:
                fits = possible[key] = any(v.fits(job.spec) for v in idle)
            if fits:
                continue
            _, after = await self._ctx.store.update_job(
                job.id, lambda j: lifecycle.unschedulable(j, now)
            )
            await job_ended(self._ctx, after)


async def _side_by_side(
    first: Callable[[], Awaitable[A]], second: Callable[[], Awaitable[B]]
) -> tuple[A, B]:
    """``(await first(), await second())``, awaited at once; each raises as it would alone."""
    seconds: list[outcome.Outcome[B]] = []

    async def run_second() -> None:
        seconds.append(await outcome.acapture(second))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_second)
        firsts = await outcome.acapture(first)
    return firsts.unwrap(), seconds[0].unwrap()
