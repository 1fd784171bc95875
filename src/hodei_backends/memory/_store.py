"""The in-memory store: one process, no durability, the reference for every other store.

No method waits, and none is a checkpoint: each runs from start to end without letting another
task in, which makes it atomic under trio's cooperative scheduling, and a job's life costs no
cancellation checks in the store (the services that call it wait elsewhere).

Indexes (the queue, each worker's active jobs, each tenant's counters) are maintained in one
place, ``_put``, from the difference between a job's old and new values, so no operation can
forget one.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence

import attrs

from hodei_core import (
    Job,
    JobState,
    LogChunk,
    Pipeline,
    Run,
    TenantUsage,
    Worker,
    WorkerRegistration,
    WorkerState,
    WorkerView,
)
from hodei_core import _lifecycle as lifecycle
from hodei_core._model_workers import fits
from hodei_core.errors import JobNotFound, PipelineNotFound, RunNotFound, WorkerNotFound
from hodei_core.ports import RATE_WINDOW_S, Assignment, JobQuery

from ._logs import Logs

__all__ = ["MemoryStore"]


# Which index a job is in by its state: the queue (0), its worker's active jobs (1), or none (2).
_INDEXED = {
    state: 0 if state is JobState.QUEUED else 1 if state.is_active else 2 for state in JobState
}


@attrs.define
class _Usage:
    slots: int = 0
    cpu: float = 0.0
    memory_mb: int = 0


_NO_USAGE = _Usage()
# the states in which a worker is expected to speak, and is lost if it does not
_HEARD = frozenset({WorkerState.ONLINE, WorkerState.DRAINING})
# Enum members read once here: in CPython 3.11 ``JobState.X`` goes through the enum
# metaclass's ``__getattr__`` hook (~0.15 us, ten times a global), on every move of every job.
_QUEUED, _ONLINE = JobState.QUEUED, WorkerState.ONLINE


class MemoryStore:
    """A ``Store`` held in this process's memory. Fast, and gone when the process ends."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        # queued job ids by priority, each a FIFO (dicts keep insertion order)
        self._queues: dict[int, dict[str, None]] = {}
        self._priorities: list[int] = []  # the keys of _queues, highest first
        self._active: dict[str, dict[str, None]] = {}
        self._usage: dict[str, _Usage] = {}
        # WorkerView of each online worker, rebuilt only after its worker or usage changed
        self._views: dict[str, WorkerView | None] = {}
        # online workers with a free slot, so that a scheduling pass on a busy fleet does not
        # look at every full worker
        self._roomy: dict[str, None] = {}
        self._order: dict[str, int] = {}
        self._tenant_queued: Counter[str] = Counter()
        self._tenant_active: Counter[str] = Counter()
        self._tenant_recent: dict[str, deque[float]] = {}
        self._workers: dict[str, Worker] = {}
        self._worker_names: dict[str, str] = {}
        self._pipelines: dict[str, Pipeline] = {}
        self._runs: dict[str, Run] = {}
        self._logs = Logs()

    def __repr__(self) -> str:
        return f"<MemoryStore jobs={len(self._jobs)} workers={len(self._workers)}>"

    # -- index maintenance --

    def _put(self, before: Job | None, after: Job) -> None:
        self._jobs[after.id] = after
        if before is not None:
            # When no field an index depends on changed, the indexes stay as they are (an
            # assigned job that starts, say, keeps its place in its worker's and tenant's
            # counts). A job's spec and tenant never change in practice; they are compared by
            # identity, and a change is reindexed like any other.
            where = _INDEXED[before.state]
            if where == _INDEXED[after.state] and (
                where == 2
                or (
                    before.spec is after.spec
                    and before.tenant is after.tenant
                    and before.worker_id == after.worker_id
                )
            ):
                return
            self._unindex(before)
        self._index(after)

    def _index(self, job: Job) -> None:
        state = job.state
        if state is _QUEUED:
            queue = self._queues.get(job.spec.priority)
            if queue is None:
                queue = self._queues[job.spec.priority] = {}
                self._priorities = sorted(self._queues, reverse=True)
            queue[job.id] = None
            self._tenant_queued[job.tenant] += 1
        elif state.is_active and job.worker_id is not None:
            active = self._active.get(job.worker_id)
            if active is None:
                active = self._active[job.worker_id] = {}
            active[job.id] = None
            usage = self._usage.get(job.worker_id)
            if usage is None:
                usage = self._usage[job.worker_id] = _Usage()
            usage.slots += 1
            usage.cpu += job.spec.resources.cpu
            usage.memory_mb += job.spec.resources.memory_mb
            self._usage_changed(job.worker_id)
            self._tenant_active[job.tenant] += 1

    def _unindex(self, job: Job) -> None:
        state = job.state
        if state is _QUEUED:
            del self._queues[job.spec.priority][job.id]
            self._tenant_queued[job.tenant] -= 1
        elif state.is_active and job.worker_id is not None:
            del self._active[job.worker_id][job.id]
            usage = self._usage[job.worker_id]
            usage.slots -= 1
            usage.cpu -= job.spec.resources.cpu
            usage.memory_mb -= job.spec.resources.memory_mb
            self._usage_changed(job.worker_id)
            self._tenant_active[job.tenant] -= 1

    def _job(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    # -- jobs --

    async def add_job(self, job: Job, admit: Callable[[TenantUsage], None] | None = None) -> None:
        recent = self._tenant_recent.get(job.tenant)
        if recent is None:
            recent = self._tenant_recent[job.tenant] = deque()
        window_start = job.created_at - RATE_WINDOW_S
        while recent and recent[0] < window_start:
            recent.popleft()
        if admit is not None:
            admit(
                TenantUsage(
                    queued=self._tenant_queued[job.tenant],
                    running=self._tenant_active[job.tenant],
                    recent_submissions=tuple(recent),
                )
            )
        recent.append(job.created_at)
        self._put(None, job)

    async def get_job(self, job_id: str) -> Job:
        return self._job(job_id)

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        out = [
            job
            for job in self._jobs.values()
            if (query.tenant is None or job.tenant == query.tenant)
            and (query.states is None or job.state in query.states)
            and (query.worker_id is None or job.worker_id == query.worker_id)
            and (query.run_id is None or job.run_id == query.run_id)
        ]
        return out[query.offset : query.offset + query.limit]

    async def update_job(
        self, job_id: str, change: Callable[[Job], Job], chunks: Sequence[LogChunk] = ()
    ) -> tuple[Job, Job]:
        before = self._job(job_id)
        after = change(before)
        self._put(before, after)
        if chunks:
            self._logs.append(job_id, before.attempt, chunks)
        return before, after

    async def queued_jobs(self, limit: int) -> list[Job]:
        out: list[Job] = []
        jobs = self._jobs
        for priority in self._priorities:
            for job_id in self._queues[priority]:
                if len(out) >= limit:
                    return out
                out.append(jobs[job_id])
        return out

    async def assign_jobs(self, assignments: Sequence[Assignment], now: float) -> list[Job]:
        assigned: list[Job] = []
        for a in assignments:
            job = self._jobs.get(a.job_id)
            if job is None or job.state is not _QUEUED or job.attempt != a.attempt:
                continue
            # checked against the live counts (each assignment below updates them), without
            # making a view per assignment
            worker = self._workers.get(a.worker_id)
            if worker is None or worker.state is not _ONLINE:
                continue
            usage = self._usage.get(a.worker_id) or _NO_USAGE
            if not fits(worker, usage.slots, usage.cpu, usage.memory_mb, job.spec):
                continue
            after = lifecycle.assign(job, a.attempt, a.worker_id, now)
            self._put(job, after)
            assigned.append(after)
        return assigned

    async def active_jobs(self, worker_id: str) -> list[Job]:
        return [self._jobs[i] for i in self._active.get(worker_id, ())]

    async def active_by_tenant(self) -> dict[str, int]:
        return {tenant: n for tenant, n in self._tenant_active.items() if n}

    # -- workers --

    def _view(self, worker_id: str) -> WorkerView | None:
        try:
            return self._views[worker_id]
        except KeyError:
            pass
        worker = self._workers.get(worker_id)
        view = None
        if worker is not None and worker.state is _ONLINE:
            usage = self._usage.get(worker_id)
            if usage is None:
                view = WorkerView(worker)
            else:
                view = WorkerView(worker, usage.slots, usage.cpu, usage.memory_mb)
        self._views[worker_id] = view
        return view

    def _set_worker(self, worker: Worker) -> None:
        self._workers[worker.id] = worker
        self._usage_changed(worker.id)

    def _usage_changed(self, worker_id: str) -> None:
        self._views.pop(worker_id, None)
        worker = self._workers.get(worker_id)
        usage = self._usage.get(worker_id)
        used = 0 if usage is None else usage.slots
        if worker is not None and worker.state is _ONLINE and used < worker.capacity.slots:
            self._roomy[worker_id] = None
        else:
            self._roomy.pop(worker_id, None)

    def _worker(self, worker_id: str) -> Worker:
        try:
            return self._workers[worker_id]
        except KeyError:
            raise WorkerNotFound(worker_id) from None

    async def register_worker(
        self,
        registration: WorkerRegistration,
        new_id: str,
        now: float,
        release: Callable[[Job], Job],
    ) -> tuple[Worker, bool, list[Job]]:
        existing_id = self._worker_names.get(registration.name)
        if existing_id is None:
            worker = lifecycle.registered(None, registration, new_id, now)
            self._order[new_id] = len(self._order)
            self._worker_names[registration.name] = new_id
            self._set_worker(worker)
            return worker, True, []
        worker = lifecycle.registered(self._workers[existing_id], registration, new_id, now)
        released = self._release(existing_id, release)
        self._set_worker(worker)
        return worker, False, released

    def _release(self, worker_id: str, change: Callable[[Job], Job]) -> list[Job]:
        # every change is computed before any is stored: if one raises, nothing changed
        changed = [change(self._jobs[i]) for i in self._active.get(worker_id, ())]
        for after in changed:
            self._put(self._jobs[after.id], after)
        return changed

    async def get_worker(self, worker_id: str) -> Worker:
        return self._worker(worker_id)

    async def list_workers(self) -> list[Worker]:
        return list(self._workers.values())

    async def update_worker(
        self, worker_id: str, change: Callable[[Worker], Worker]
    ) -> tuple[Worker, Worker]:
        before = self._worker(worker_id)
        after = change(before)
        self._set_worker(after)
        return before, after

    async def touch_workers(self, worker_ids: Collection[str], now: float) -> None:
        for worker_id in worker_ids:
            worker = self._workers.get(worker_id)
            if worker is not None and worker.state in _HEARD and worker.last_heartbeat < now:
                self._set_worker(attrs.evolve(worker, last_heartbeat=now))

    async def worker_views(self, *, with_room: bool = False) -> list[WorkerView]:
        view = self._view
        # both in registration order
        ids = sorted(self._roomy, key=self._order.__getitem__) if with_room else self._workers
        return [v for v in map(view, ids) if v is not None]

    async def lose_worker(
        self, worker_id: str, stale_before: float, change: Callable[[Job], Job]
    ) -> tuple[Worker, list[Job]] | None:
        worker = self._worker(worker_id)
        if worker.state not in (WorkerState.ONLINE, WorkerState.DRAINING):
            return None
        if worker.last_heartbeat >= stale_before:
            return None
        lost = lifecycle.transition_worker(worker, WorkerState.LOST)
        changed = self._release(worker_id, change)
        self._set_worker(lost)
        return lost, changed

    async def leave_worker(
        self, worker_id: str, release: Callable[[Job], Job]
    ) -> tuple[Worker, list[Job]]:
        worker = self._worker(worker_id)
        if worker.state is not WorkerState.OFFLINE:
            worker = lifecycle.transition_worker(worker, WorkerState.OFFLINE)
        released = self._release(worker_id, release)
        self._set_worker(worker)
        return worker, released

    # -- pipelines and runs --

    async def add_pipeline(self, pipeline: Pipeline) -> None:
        self._pipelines[pipeline.id] = pipeline

    async def get_pipeline(self, pipeline_id: str) -> Pipeline:
        try:
            return self._pipelines[pipeline_id]
        except KeyError:
            raise PipelineNotFound(pipeline_id) from None

    async def list_pipelines(self, tenant: str | None = None) -> list[Pipeline]:
        return [p for p in self._pipelines.values() if tenant is None or p.tenant == tenant]

    async def delete_pipeline(self, pipeline_id: str) -> None:
        if self._pipelines.pop(pipeline_id, None) is None:
            raise PipelineNotFound(pipeline_id)

    async def add_run(self, run: Run, jobs: Sequence[Job]) -> None:
        self._runs[run.id] = run
        for job in jobs:
            self._put(None, job)

    async def get_run(self, run_id: str) -> Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    async def list_runs(self, pipeline_id: str | None = None) -> list[Run]:
        return [r for r in self._runs.values() if pipeline_id in (None, r.pipeline_id)]

    async def update_run(
        self, run_id: str, change: Callable[[Run], tuple[Run, Sequence[Job]]]
    ) -> tuple[Run, list[Job]]:
        try:
            before = self._runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None
        after, jobs = change(before)
        self._runs[run_id] = after
        for job in jobs:
            self._put(None, job)
        return after, list(jobs)

    # -- logs --

    async def append_logs(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        self._logs.append(job_id, attempt, chunks)

    async def read_logs(
        self, job_id: str, attempt: int, from_seq: int = 0, limit: int | None = None
    ) -> list[LogChunk]:
        return self._logs.read(job_id, attempt, from_seq, limit)
