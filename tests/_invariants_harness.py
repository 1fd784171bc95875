"""The harness of ``test_invariants.py``: one engine over the memory backends and a fake clock,
the operations hypothesis draws (``Harness.op_*``), each checking its own result, and the
invariants checked after every one of them (``Harness.check``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from hodei_backends.memory import MemoryEventBus, MemoryStore
from hodei_core import (
    Capacity,
    FailureReason,
    Hodei,
    InvalidTransition,
    Job,
    JobAlreadyFinished,
    JobSpec,
    JobState,
    Outcome,
    StaleAttempt,
    Worker,
    WorkerRegistration,
    WorkerState,
)
from hodei_core._lifecycle import FREE_UNSTARTED_LOSSES as FREE_LOSSES
from hodei_core.ports import JobQuery, SchedulingPolicy, Store

LOST_AFTER_S = 30.0
LABELS = ("linux", "gpu", "arm")
# Few names, so that re-registering an existing worker (an update) is common.
WORKER_NAMES = ("w0", "w1", "w2", "w3")
EVERYTHING = JobQuery(limit=10**6)
ACTIVE = (JobState.ASSIGNED, JobState.RUNNING, JobState.CANCELLING)
LIVE = (WorkerState.ONLINE, WorkerState.DRAINING)


@attrs.define
class FakeClock:
    """The engine's wall clock, moved only by the test."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _pick(items: Sequence[Any], i: int) -> Any:
    return items[i % len(items)]


def _expected_end(job: Job, outcome: Outcome) -> tuple[JobState, int]:
    """The state and attempt ``job`` (active) must be in after its worker reports ``outcome``."""
    if job.state is JobState.CANCELLING or outcome.cancelled:
        return JobState.CANCELLED, job.attempt
    if outcome.exit_code == 0 and not outcome.timed_out and outcome.error is None:
        return JobState.SUCCEEDED, job.attempt
    if job.attempt - job.unstarted_losses <= job.spec.retries:  # attempts that started
        return JobState.QUEUED, job.attempt + 1
    return (JobState.TIMED_OUT if outcome.timed_out else JobState.FAILED), job.attempt


@attrs.define
class Harness:
    """Drives one engine and keeps the history the invariants are checked against."""

    hodei: Hodei
    clock: FakeClock
    accepted: list[str] = attrs.Factory(list)  # every job id submit returned, in order
    finished: dict[str, Job] = attrs.Factory(dict)  # terminal jobs as first seen
    attempts: dict[str, int] = attrs.Factory(dict)  # the highest attempt seen per job
    # (job, attempt) -> the worker that attempt was placed on / seen running on
    owners: dict[tuple[str, int], str] = attrs.Factory(dict)
    ran_on: dict[tuple[str, int], str] = attrs.Factory(dict)

    @property
    def store(self) -> Store:
        return self.hodei.store

    async def jobs(self) -> dict[str, Job]:
        return {job.id: job for job in await self.store.list_jobs(EVERYTHING)}

    async def workers(self) -> list[Worker]:
        return await self.store.list_workers()

    async def snapshot(self) -> tuple[dict[str, Job], list[Worker]]:
        return await self.jobs(), await self.workers()

    def saw_running(self, job: Job, worker_id: str | None) -> None:
        assert worker_id is not None
        other = self.ran_on.setdefault((job.id, job.attempt), worker_id)
        assert other == worker_id, f"{job.id} attempt {job.attempt} ran on {other} and {worker_id}"

    # -- the invariants --

    async def check(self) -> None:
        jobs = await self.jobs()
        # (4) nothing vanishes, nothing appears from nowhere
        assert list(jobs) == self.accepted

        held: dict[str, str] = {}  # job id -> the worker whose active_jobs lists it
        for worker in await self.workers():
            active = await self.store.active_jobs(worker.id)
            # (1) capacity
            assert len(active) <= worker.capacity.slots, (worker, active)
            if worker.state is WorkerState.LOST:
                # losing a worker moves all its jobs on, and a lost worker gets no new ones
                assert not active, (worker, active)
            for job in active:
                # (2) one worker per job, and the index agrees with the job itself
                assert job.id not in held, (job, held[job.id], worker.id)
                held[job.id] = worker.id
                assert job == jobs[job.id]
                assert job.state in ACTIVE and job.worker_id == worker.id, (job, worker)
                # (3) labels
                assert job.spec.labels <= worker.labels, (job, worker)

        queued = {job.id for job in await self.store.queued_jobs(10**6)}
        for job in jobs.values():
            if job.state in ACTIVE:
                assert held.get(job.id) == job.worker_id, (job, held.get(job.id))
                # (2) over time: an attempt is placed once; moving on means a new attempt
                assert job.worker_id is not None
                owner = self.owners.setdefault((job.id, job.attempt), job.worker_id)
                assert owner == job.worker_id, (job, owner)
            else:
                assert job.id not in held
            if job.state in (JobState.RUNNING, JobState.CANCELLING):
                self.saw_running(job, job.worker_id)
            assert (job.id in queued) == (job.state is JobState.QUEUED), job
            if job.state is JobState.QUEUED:
                assert job.worker_id is None, job
            # (4) attempts only grow, and only as far as the retries allow
            # attempts that never started do not count against the retries
            started = job.attempt - job.unstarted_losses
            assert self.attempts.get(job.id, 1) <= job.attempt, job
            assert 1 <= started <= job.spec.retries + 1, job
            self.attempts[job.id] = job.attempt
            if job.id in self.finished:
                assert job == self.finished[job.id], "a terminal job changed"
            elif job.state.is_terminal:
                self.finished[job.id] = job

    # -- the operations --

    async def op_submit(
        self, labels: frozenset[str], retries: int, tenant: str, priority: int
    ) -> None:
        spec = JobSpec(command=["true"], labels=labels, retries=retries, priority=priority)
        job = await self.hodei.submit(spec, tenant=tenant)
        assert (job.state, job.attempt, job.worker_id) == (JobState.QUEUED, 1, None)
        self.accepted.append(job.id)

    async def op_register(self, i: int, labels: frozenset[str], slots: int) -> None:
        name = _pick(WORKER_NAMES, i)
        known = {w.name: w for w in await self.workers()}
        registration = WorkerRegistration(name=name, labels=labels, capacity=Capacity(slots=slots))
        held = [] if name not in known else await self.store.active_jobs(known[name].id)
        worker, created = await self.hodei.workers.register(registration)
        assert created == (name not in known)
        if not created:
            assert worker.id == known[name].id  # an update of the same record
            # a restarted agent runs none of what it ran before: each went through ``lose``
            assert await self.store.active_jobs(worker.id) == []
            for job in held:
                after = await self.store.get_job(job.id)
                assert after.attempt == job.attempt + 1 or after.state.is_terminal, after
        assert (worker.state, worker.labels, worker.capacity.slots) == (
            WorkerState.ONLINE,
            labels,
            slots,
        )

    async def op_schedule(self) -> None:
        before = await self.jobs()
        assigned = await self.hodei.scheduler.schedule_once()
        after, workers = await self.snapshot()
        states = {w.id: w.state for w in workers}
        placed = {
            job.id: job
            for job in after.values()
            if before[job.id].state is JobState.QUEUED and job.state is JobState.ASSIGNED
        }
        assert len(placed) == assigned
        for job in placed.values():
            assert job.attempt == before[job.id].attempt
            assert job.worker_id is not None and states[job.worker_id] is WorkerState.ONLINE, job
        unplaced = {job_id: job for job_id, job in after.items() if job_id not in placed}
        assert unplaced == {job_id: job for job_id, job in before.items() if job_id not in placed}
        # The stock policies always choose a candidate, so a pass leaves no queued job that an
        # online worker has room for (the jobs here need no cpu or memory: room is labels and a
        # free slot).
        for worker in workers:
            if worker.state is not WorkerState.ONLINE:
                continue
            free = worker.capacity.slots - len(await self.store.active_jobs(worker.id))
            if free <= 0:
                continue
            for job in after.values():
                assert not (job.state is JobState.QUEUED and job.spec.labels <= worker.labels), (
                    f"{job} left queued while {worker} has {free} free slot(s)"
                )

    async def _pick_active(self, i: int) -> tuple[Worker, Job] | None:
        """One of the active jobs of the whole fleet, with the worker that holds it."""
        held = [
            (worker, job)
            for worker in await self.workers()
            for job in await self.store.active_jobs(worker.id)
        ]
        return _pick(held, i) if held else None

    async def op_start(self, i: int) -> None:
        picked = await self._pick_active(i)
        if picked is None:
            return
        worker, job = picked
        after = await self.hodei.orchestrator.start(worker.id, job.id, job.attempt)
        if job.state is JobState.ASSIGNED:
            assert (after.state, after.attempt, after.worker_id) == (
                JobState.RUNNING,
                job.attempt,
                worker.id,
            )
        else:
            assert after == job  # a resend of the start report
        self.saw_running(job, worker.id)

    async def op_finish(self, i: int, outcome: Outcome, resend: bool) -> None:
        picked = await self._pick_active(i)
        if picked is None:
            return
        worker, job = picked
        self.saw_running(job, worker.id)  # an assigned job that finishes ran, if only briefly
        orchestrator = self.hodei.orchestrator
        after = await orchestrator.finish(worker.id, job.id, job.attempt, outcome)
        assert (after.state, after.attempt) == _expected_end(job, outcome), (job, outcome, after)
        assert (after.worker_id is None) == (after.state is JobState.QUEUED)
        if not resend:
            return
        # The agent did not hear the answer and sends its report again: that must be harmless.
        await self.check()
        snapshot = await self.snapshot()
        if after.state.is_terminal:
            assert await orchestrator.finish(worker.id, job.id, job.attempt, outcome) == after
        else:
            try:
                await orchestrator.finish(worker.id, job.id, job.attempt, outcome)
            except StaleAttempt:
                pass
            else:
                raise AssertionError(f"a resent report was taken for the retried {after}")
        assert await self.snapshot() == snapshot

    async def op_stale(self, i: int, of_active: bool, kind: str, report: str) -> None:
        if of_active:
            picked = await self._pick_active(i)
            if picked is None:
                return
            job = picked[1]
        elif self.accepted:
            job = await self.store.get_job(_pick(self.accepted, i))
        else:
            return
        workers = [w.id for w in await self.workers()]
        if kind == "zombie":
            # the worker that had the previous attempt, back from the dead and reporting on it
            attempt = job.attempt - 1
            zombie = self.owners.get((job.id, attempt))
            if zombie is None:
                return
            worker_id = zombie
        elif kind == "wrong_worker":
            attempt = job.attempt
            worker_id = next((w for w in workers if w != job.worker_id), "wrk-ghost")
        else:
            attempt = (
                job.attempt - 1 if kind == "old_attempt" and job.attempt > 1 else job.attempt + 1
            )
            worker_id = job.worker_id or (workers[0] if workers else "wrk-ghost")
        snapshot = await self.snapshot()
        orchestrator = self.hodei.orchestrator
        try:
            if report == "start":
                result = await orchestrator.start(worker_id, job.id, attempt)
            else:
                result = await orchestrator.finish(worker_id, job.id, attempt, Outcome(0))
        except StaleAttempt:
            pass
        except (JobAlreadyFinished, InvalidTransition):
            assert job.state.is_terminal, job
        else:
            # Only a repeat of a finished attempt's result may go through, changing nothing.
            assert job.state.is_terminal and result == job, (job, worker_id, attempt, result)
        assert await self.snapshot() == snapshot, "a refused report changed something"

    async def op_heartbeat(self, i: int, ghost: bool) -> None:
        workers = await self.workers()
        if not workers:
            return
        worker = _pick(workers, i)
        active = await self.store.active_jobs(worker.id)
        running = [(j.id, j.attempt) for j in active if j.state is not JobState.ASSIGNED]
        cancelling = {(j.id, j.attempt) for j in active if j.state is JobState.CANCELLING}
        mine = {(j.id, j.attempt) for j in active}
        # The worker may still run a job that is no longer its own (it was lost meanwhile).
        strangers = [job_id for job_id in self.accepted if (job_id, 1) not in mine]
        if ghost and strangers:
            running.append((_pick(strangers, i), 1))
        jobs = await self.jobs()
        instructions = await self.hodei.workers.heartbeat(worker.id, running)
        after = await self.store.get_worker(worker.id)
        # a lost or offline worker that speaks up is back; a draining one keeps draining
        expected = (
            WorkerState.DRAINING if worker.state is WorkerState.DRAINING else WorkerState.ONLINE
        )
        assert (after.state, after.last_heartbeat) == (expected, self.clock.now)
        # it is told to stop what it runs that is being cancelled or no longer its own
        ghosts = {key for key in running if key not in mine}
        assert instructions.cancel == (cancelling & set(running)) | ghosts, (
            instructions,
            active,
            running,
        )
        assert instructions.drain == (after.state is WorkerState.DRAINING)
        assert not instructions.jobs  # new work comes by the long-poll, not the heartbeat
        assert await self.jobs() == jobs

    async def op_tick(self, dt: float) -> None:
        self.clock.now += dt
        stale_before = self.clock.now - LOST_AFTER_S
        before, workers = await self.snapshot()
        silent = {w.id for w in workers if w.state in LIVE and w.last_heartbeat < stale_before}
        assert sorted(await self.hodei.workers.reap()) == sorted(silent)
        after, workers = await self.snapshot()
        assert all(w.state is WorkerState.LOST for w in workers if w.id in silent)
        for job_id, job in before.items():
            now = after[job_id]
            if job.state not in ACTIVE or job.worker_id not in silent:
                assert now == job
            elif job.state is JobState.CANCELLING:
                assert now.state is JobState.CANCELLED, now  # vanishing confirms the cancel
            elif job.state is JobState.ASSIGNED and job.unstarted_losses < FREE_LOSSES:
                # it never started: that costs no retry (the first few times)
                assert (now.state, now.attempt, now.worker_id, now.unstarted_losses) == (
                    JobState.QUEUED,
                    job.attempt + 1,
                    None,
                    job.unstarted_losses + 1,
                ), now
            elif job.attempt - job.unstarted_losses <= job.spec.retries:
                assert (now.state, now.attempt, now.worker_id, now.unstarted_losses) == (
                    JobState.QUEUED,
                    job.attempt + 1,
                    None,
                    job.unstarted_losses,
                ), now
            else:
                assert (now.state, now.failure) == (JobState.FAILED, FailureReason.WORKER_LOST)

    async def op_cancel(self, i: int) -> None:
        if not self.accepted:
            return
        job = await self.store.get_job(_pick(self.accepted, i))
        try:
            after = await self.hodei.cancel(job.id)
        except JobAlreadyFinished:
            assert job.state.is_terminal, job
            return
        if job.state in (JobState.QUEUED, JobState.ASSIGNED):
            assert (after.state, after.failure) == (JobState.CANCELLED, FailureReason.CANCELLED)
        else:
            # a process runs it: the job is cancelling until its worker confirms
            assert after.state is JobState.CANCELLING and after.worker_id == job.worker_id

    async def op_drain(self, i: int) -> None:
        workers = await self.workers()
        if not workers:
            return
        worker = _pick(workers, i)
        try:
            after = await self.hodei.workers.drain(worker.id)
        except InvalidTransition:
            assert worker.state not in LIVE, worker  # only a live worker can drain
        else:
            assert after.state is WorkerState.DRAINING

    async def op_leave(self, i: int) -> None:
        workers = await self.workers()
        if not workers:
            return
        after = await self.hodei.workers.leave(_pick(workers, i).id)
        assert after.state is WorkerState.OFFLINE
        assert await self.store.active_jobs(after.id) == []  # its jobs went back or failed

    # -- the end --

    async def finish_everything(self) -> None:
        """A fresh worker that fits every job joins, and every job is run to its end."""
        everyone = WorkerRegistration(
            name="final",
            labels=frozenset(LABELS),
            capacity=Capacity(slots=len(self.accepted) + 1),
        )
        await self.hodei.workers.register(everyone)
        # One round places every queued job (they all fit the final worker) and finishes them
        # with success; a second round would catch a job that came back queued.
        for _ in range(2):
            await self.hodei.scheduler.schedule_once()
            await self.check()
            for worker in await self.workers():
                for job in await self.store.active_jobs(worker.id):
                    await self.hodei.orchestrator.finish(worker.id, job.id, job.attempt, Outcome(0))
                    await self.check()
        unfinished = [job for job in (await self.jobs()).values() if not job.is_finished]
        assert not unfinished


def new_engine(policy: SchedulingPolicy) -> Harness:
    clock = FakeClock()
    hodei = Hodei(
        store=MemoryStore(),
        bus=MemoryEventBus(),
        policy=policy,
        clock=clock,
        lost_after_s=LOST_AFTER_S,
    )
    return Harness(hodei, clock)
