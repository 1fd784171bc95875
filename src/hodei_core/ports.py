"""The ports: what the domain needs from the outside world, as ``typing.Protocol`` classes.

Each method's docstring is its contract. ``hodei_core.testing.contracts`` checks any adapter
against these contracts; every adapter shipped with Hodei passes it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import attrs
import trio

from ._models import (
    Job,
    JobState,
    LogChunk,
    Outcome,
    Pipeline,
    Run,
    Stream,
    TenantUsage,
    Worker,
    WorkerRegistration,
    WorkerView,
)
from .events import Event

__all__ = [
    "Assignment",
    "ControlPlane",
    "EventBus",
    "Executor",
    "Instructions",
    "JobQuery",
    "LogSink",
    "RankingPolicy",
    "SchedulingPolicy",
    "Store",
]

#: How far back ``TenantUsage.recent_submissions`` looks, for the per-minute submit rate.
RATE_WINDOW_S = 60.0


@attrs.frozen
class Assignment:
    """A proposal to place ``job_id`` (at ``attempt``) on ``worker_id``."""

    job_id: str
    attempt: int
    worker_id: str


@attrs.frozen(kw_only=True)
class JobQuery:
    """Which jobs to list; every criterion given must hold. Results come oldest first."""

    tenant: str | None = None
    states: frozenset[JobState] | None = None
    worker_id: str | None = None
    run_id: str | None = None
    offset: int = 0
    limit: int = 100


@attrs.frozen
class Instructions:
    """What the server wants from a worker: jobs to run, ``(job_id, attempt)`` pairs to stop,
    whether to drain, and (in a heartbeat's answer) the pace of its heartbeats from now on."""

    jobs: tuple[Job, ...] = ()
    cancel: frozenset[tuple[str, int]] = frozenset()
    drain: bool = False
    #: seconds until the next heartbeat; None keeps the worker's current pace
    heartbeat_interval_s: float | None = None


class Store(Protocol):
    """The durable state of jobs, workers, pipelines, runs and logs.

    Every method is atomic: it happens entirely or not at all, and two callers (also in two
    processes on one database) never see each other's half-done work. Methods that take a
    ``change`` function call it with the current value inside that atomic step; the function
    must be pure, may be called more than once, and may raise to abort the operation (its
    exception propagates unchanged).

    Any failure of the underlying system raises ``StorageError`` (with the driver's exception as
    ``__cause__``); no driver exception escapes.
    """

    # -- jobs --

    async def add_job(self, job: Job, admit: Callable[[TenantUsage], None] | None = None) -> None:
        """Store a new job. When ``admit`` is given, call it first with the tenant's usage
        (jobs queued, jobs active, ``created_at`` of its jobs created in the ``RATE_WINDOW_S``
        before ``job.created_at``); if it raises, store nothing and let the error through.
        """

    async def get_job(self, job_id: str) -> Job:
        """The job with this id.

        Raises:
            JobNotFound: there is none.
        """

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        """Jobs matching ``query`` in the order they were added, from ``offset``, at most
        ``limit``."""

    async def update_job(
        self, job_id: str, change: Callable[[Job], Job], chunks: Sequence[LogChunk] = ()
    ) -> tuple[Job, Job]:
        """Replace the job by ``change(job)``; returns ``(before, after)``.

        ``chunks`` are added to the log of ``before.attempt`` in the same atomic step (as
        ``append_logs`` would, a stored ``seq`` ignored), only if ``change`` returns: an
        attempt's end and its last output are recorded together or not at all.

        Raises:
            JobNotFound: there is no such job.
        """

    async def queued_jobs(self, limit: int) -> list[Job]:
        """Up to ``limit`` queued jobs, highest priority first, then oldest first."""

    async def assign_jobs(self, assignments: Sequence[Assignment], now: float) -> list[Job]:
        """Carry out every assignment that still holds, in one atomic step, and return the
        assigned jobs.

        An assignment holds when its job is still queued at that attempt, and its worker is
        online, has all the job's labels and has room for it after the assignments before it in
        ``assignments``. The others are skipped silently. An assigned job gets ``worker_id`` and
        ``assigned_at=now``.
        """

    async def active_jobs(self, worker_id: str) -> list[Job]:
        """The jobs assigned to, running on, or being cancelled on this worker."""

    async def active_by_tenant(self) -> dict[str, int]:
        """How many jobs each tenant has assigned, running or being cancelled."""

    # -- workers --

    async def register_worker(
        self,
        registration: WorkerRegistration,
        new_id: str,
        now: float,
        release: Callable[[Job], Job],
    ) -> tuple[Worker, bool, list[Job]]:
        """Create the worker named ``registration.name`` with id ``new_id`` and
        ``registered_at=now``, or update the one that has that name (its labels, capacity,
        version and hostname); either way it is online with ``last_heartbeat=now``.

        An agent registers when it starts, so an existing worker's active jobs are no longer
        run by anyone: each is replaced by ``release(job)`` in the same atomic step. Returns the
        worker, whether it was created, and the released jobs."""

    async def get_worker(self, worker_id: str) -> Worker:
        """The worker with this id.

        Raises:
            WorkerNotFound: there is none.
        """

    async def list_workers(self) -> list[Worker]:
        """Every worker, in the order they registered first."""

    async def update_worker(
        self, worker_id: str, change: Callable[[Worker], Worker]
    ) -> tuple[Worker, Worker]:
        """Replace the worker by ``change(worker)``; returns ``(before, after)``.

        Raises:
            WorkerNotFound: there is no such worker.
        """

    async def touch_workers(self, worker_ids: Collection[str], now: float) -> None:
        """Set ``last_heartbeat=now`` on each of these workers that is online or draining and
        was last heard from before ``now``, in one step. Lost, offline and unknown workers
        are left as they are: coming back is a heartbeat's business, which also says which
        jobs to stop."""

    async def worker_views(self, *, with_room: bool = False) -> list[WorkerView]:
        """Every online worker with what its active jobs use, in the order they registered;
        with ``with_room``, only those with at least one free slot (what a scheduling pass
        needs, and on a busy fleet far fewer)."""

    async def lose_worker(
        self, worker_id: str, stale_before: float, change: Callable[[Job], Job]
    ) -> tuple[Worker, list[Job]] | None:
        """If the worker is online or draining and last heard from before ``stale_before``,
        mark it lost and replace each of its active jobs by ``change(job)``, all in one atomic
        step; return the lost worker and the changed jobs. Otherwise change nothing and return
        None.

        Raises:
            WorkerNotFound: there is no such worker.
        """

    async def leave_worker(
        self, worker_id: str, release: Callable[[Job], Job]
    ) -> tuple[Worker, list[Job]]:
        """Mark the worker offline (if it is not already) and replace each of its active jobs
        by ``release(job)``, atomically; returns the worker and the released jobs.

        Raises:
            WorkerNotFound: there is no such worker.
        """

    # -- pipelines and runs --

    async def add_pipeline(self, pipeline: Pipeline) -> None:
        """Store a new pipeline."""

    async def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """The pipeline with this id.

        Raises:
            PipelineNotFound: there is none.
        """

    async def list_pipelines(self, tenant: str | None = None) -> list[Pipeline]:
        """Pipelines (of ``tenant`` if given), oldest first."""

    async def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline; its runs and their jobs stay.

        Raises:
            PipelineNotFound: there is none.
        """

    async def add_run(self, run: Run, jobs: Sequence[Job]) -> None:
        """Store a new run together with the jobs of its first steps, atomically."""

    async def get_run(self, run_id: str) -> Run:
        """The run with this id.

        Raises:
            RunNotFound: there is none.
        """

    async def list_runs(self, pipeline_id: str | None = None) -> list[Run]:
        """Runs (of ``pipeline_id`` if given), oldest first."""

    async def update_run(
        self, run_id: str, change: Callable[[Run], tuple[Run, Sequence[Job]]]
    ) -> tuple[Run, list[Job]]:
        """Replace the run by the first item of ``change(run)`` and add the jobs in its second,
        atomically. Returns the new run and the added jobs.

        Raises:
            RunNotFound: there is no such run.
        """

    # -- logs --

    async def append_logs(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        """Store log chunks of one attempt. A chunk whose ``seq`` is already stored for that
        attempt is ignored, so that a sender may resend."""

    async def read_logs(
        self, job_id: str, attempt: int, from_seq: int = 0, limit: int | None = None
    ) -> list[LogChunk]:
        """The attempt's chunks with ``seq >= from_seq`` in ``seq`` order, at most ``limit``."""


class EventBus(Protocol):
    """Carries events between the parts of Hodei, possibly across processes.

    Delivery is at most once and in publish order per publisher: a slow subscriber may miss
    events rather than slow the publisher down, so consumers treat an event as a hint to re-read
    the store. Failures raise ``BusError``.
    """

    async def publish(self, event: Event) -> None:
        """Send ``event`` to every subscription whose pattern matches ``event.topic``."""

    def subscribe(
        self, pattern: str
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[Event]]:
        """Receive the events matching ``pattern`` (``*`` one token, trailing ``>`` the rest)
        published while the context is open, through a trio memory channel (whatever the
        transport, events reach trio code as a channel it can also poll with
        ``receive_nowait``)."""


@runtime_checkable
class SchedulingPolicy(Protocol):
    """Ranks workers for a job: pure, synchronous and quick.

    ``candidates`` are already filtered: online, with the job's labels, with room for it, never
    empty. Return one of them, or None to leave the job queued for now. A policy cannot break a
    constraint, it only chooses. ``hodei_core.testing.check_scheduling_policy`` checks these
    rules on a policy.
    """

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        """The worker that should run ``job``, or None."""


@runtime_checkable
class RankingPolicy(SchedulingPolicy, Protocol):
    """A ``SchedulingPolicy`` that ranks workers by a key of their own, whatever the job.

    Its contract, on top of ``SchedulingPolicy``'s: ``choose(job, candidates)`` is always the
    candidate with the smallest ``sort_key``, the earliest of equals (as ``min`` picks), and
    never None. The scheduler then keeps the candidates of each kind of job in a heap instead
    of calling ``choose`` for every job: on a large fleet a job costs a heap operation rather
    than a look at every candidate. ``check_scheduling_policy`` checks the contract.

    A subclass that overrides ``choose`` but not ``sort_key`` is not taken at its inherited
    word: it is asked for every job, as a policy without a key is.
    """

    def sort_key(self, view: WorkerView) -> float:
        """The rank of a candidate: the smallest wins."""


class LogSink(Protocol):
    """Where an executor writes a job's output, as it comes."""

    async def write(self, stream: Stream, data: str) -> None:
        """Take the next piece of ``stream``. May wait, which slows the producer down."""


class Executor(Protocol):
    """Runs one job on a worker.

    Cancellation comes from the caller's trio cancel scope (a timeout, a cancel request): when
    cancelled, the executor stops everything the job started before it returns or raises.
    """

    async def run(self, job: Job, logs: LogSink) -> int:
        """Run ``job`` to completion, writing its output to ``logs``; return its exit code.

        Raises:
            ExecutorError: the job could not be run at all (e.g. the command does not exist).
        """


class ControlPlane(Protocol):
    """The server as one worker sees it. The worker loop in ``hodei_core`` drives it.

    Every report names the job's attempt; a report about an attempt that is no longer current
    raises ``StaleAttempt`` and the worker must drop that job.
    """

    async def register(self, registration: WorkerRegistration) -> Worker:
        """Create or update the worker record for this name; returns it, online."""

    async def heartbeat(self, worker_id: str, running: Sequence[tuple[str, int]]) -> Instructions:
        """Say the worker is alive and runs these ``(job_id, attempt)``; returns the jobs it
        must cancel (including any it runs that are no longer its own), the drain flag, and
        possibly a new heartbeat pace (a server stretches it as its fleet grows)."""

    async def poll(
        self, worker_id: str, running: Sequence[tuple[str, int]], timeout_s: float
    ) -> Instructions:
        """Wait until there are jobs assigned to the worker beyond the ``(job_id, attempt)``
        pairs it is ``running``, or some of those to stop, or a drain request, or until
        ``timeout_s`` passes; returns them (empty ``Instructions`` on timeout). A worker leaves
        out of ``running`` the attempts it is already stopping. ``running`` may change while
        the poll waits (the worker loop hands over a live view): read it when answering."""

    async def start(self, worker_id: str, job_id: str, attempt: int) -> None:
        """The worker started this attempt.

        Raises:
            StaleAttempt: the attempt is not current or not this worker's.
            JobAlreadyFinished: the job was cancelled meanwhile.
        """

    async def append_logs(
        self, worker_id: str, job_id: str, attempt: int, chunks: Sequence[LogChunk]
    ) -> None:
        """Add output of this attempt (idempotent by ``seq``).

        Raises:
            StaleAttempt: the attempt is not current or not this worker's.
        """

    async def finish(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        chunks: Sequence[LogChunk] = (),
    ) -> None:
        """The attempt ended with ``outcome``, with these last log chunks (idempotent).

        Raises:
            StaleAttempt: the attempt is not current or not this worker's.
        """

    async def leave(self, worker_id: str) -> None:
        """The worker goes offline on purpose (after draining)."""
