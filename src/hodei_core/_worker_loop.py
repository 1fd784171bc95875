"""The worker loop: one piece of code for in-process workers and the HWP agent alike.

It registers, then long-polls the control plane for work, runs each job with the executor (its
output masked, numbered and sent in batches), reports how it ended, heartbeats, and obeys cancel
and drain.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import overload

import attrs
import trio

from ._context import Clock
from ._job_log import STARTED, JobLog
from ._models import Job, Outcome, Stream, Worker, WorkerRegistration
from .errors import ExecutorError, JobAlreadyFinished, JobNotFound, StaleAttempt
from .ports import ControlPlane, Executor, Instructions

__all__ = ["WorkerLoop", "WorkerSettings"]

log = logging.getLogger("hodei.worker")

# What makes the server refuse a report for good: the job is no longer this attempt's.
_GONE = (StaleAttempt, JobAlreadyFinished, JobNotFound)
# the outcome of most jobs, made once (outcomes are frozen)
_SUCCESS = Outcome(0)


@attrs.frozen(kw_only=True)
class WorkerSettings:
    """How a worker loop paces itself.

    ``heartbeat_interval_s`` is the pace until a heartbeat answer asks for another one, which
    the loop then keeps, unless ``pinned_heartbeat`` (the user chose the pace).

    ``start_alongside``: start a job's executor while its start report is on its way, instead
    of once the control plane took it. For a remote control plane this saves a round trip on
    every job's way to its process; a start refused as stale then stops the executor, as a
    cancel does, its output is dropped, and nothing more is reported of the attempt. Until
    the start is taken, the job's output waits in the worker (a job with more than a log
    batch of it waits too), and so does its final report, so that the control plane hears of
    an attempt in order; the job's timeout counts from the start being taken.
    """

    heartbeat_interval_s: float = 5.0
    pinned_heartbeat: bool = False
    poll_timeout_s: float = 25.0
    log_batch_bytes: int = 64 * 1024
    log_flush_interval_s: float = 0.1
    start_alongside: bool = False


@attrs.define
class _Running:
    job: Job
    log: JobLog
    cancelled: bool = False
    #: the cancel scope of the runner whose executor runs the job right now, else None
    executing: trio.CancelScope | None = None
    #: the control plane did not take the start (``start_alongside``; it refused it, or the
    #: report failed): nothing more is reported of the attempt
    untaken: bool = False

    def stop(self) -> None:
        """Stop the job as a cancel: its process if it runs, else it will not be started."""
        self.cancelled = True
        if self.executing is not None:
            self.executing.cancel()


class _LiveRunning(Sequence[tuple[str, int]]):
    """``WorkerLoop.running`` as it is whenever it is read, not as it was when handed over: an
    in-process long-poll that waited a while must not ask to stop jobs that ended meanwhile."""

    def __init__(self, running: dict[tuple[str, int], _Running]) -> None:
        self._running = running

    def _keys(self) -> list[tuple[str, int]]:
        return [key for key, r in self._running.items() if not r.cancelled]

    def __len__(self) -> int:
        return len(self._keys())

    @overload
    def __getitem__(self, index: int) -> tuple[str, int]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, int]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, int] | list[tuple[str, int]]:
        return self._keys()[index]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._keys())


class WorkerLoop:
    """Runs one worker against a ``ControlPlane`` with an ``Executor``.

    ``clock`` stamps log chunks with wall-clock time.
    """

    def __init__(
        self,
        control: ControlPlane,
        executor: Executor,
        registration: WorkerRegistration,
        *,
        settings: WorkerSettings | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.control = control
        self.executor = executor
        self.registration = registration
        self.settings = settings or WorkerSettings()
        self.clock = clock
        self.worker: Worker | None = None
        self._id = ""  # the worker's id once registered (``worker_id`` checks that it is)
        self._running: dict[tuple[str, int], _Running] = {}
        self._live_running = _LiveRunning(self._running)
        self._draining = False
        self._beat_now = trio.Event()
        self._idle = trio.Event()
        # jobs handed over but not yet taken by a runner, and the runners waiting for one
        self._todo: deque[_Running] = deque()
        self._idle_runners: list[trio.lowlevel.Task] = []
        self._waking = False  # a runner was woken (or started) and has not looked at _todo yet
        #: set when some job has log output waiting to be sent
        self.logs_waiting = trio.Event()

    @property
    def worker_id(self) -> str:
        """The id the server gave this worker."""
        assert self.worker is not None, "the worker has not registered yet"
        return self.worker.id

    @property
    def running(self) -> list[tuple[str, int]]:
        """The ``(job_id, attempt)`` pairs this worker runs and has not been told to stop."""
        return [key for key, r in self._running.items() if not r.cancelled]

    def drain(self) -> None:
        """Take no new job; return from ``run`` once the running ones have finished.

        The worker heartbeats at once: while it long-polled, a server may have counted the
        waiting poll as a sign of life and asked for rare heartbeats; from now on only its
        heartbeats say it is alive, and the answer gives the pace for that.
        """
        if not self._draining:
            self._draining = True
            self._beat_now.set()
        if not self._running:
            self._idle.set()

    async def run(self, *, task_status: trio.TaskStatus[Worker] = trio.TASK_STATUS_IGNORED) -> None:
        """Register, then work until drained (or cancelled)."""
        self.worker = await self.control.register(self.registration)
        self._id = self.worker.id
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeats)
            nursery.start_soon(self._flush_logs)
            task_status.started(self.worker)
            while not self._draining:
                instructions = await self.control.poll(
                    self.worker_id, self._live_running, self.settings.poll_timeout_s
                )
                self._obey(instructions, nursery)
            await self._idle.wait()
            # no heartbeat may follow the leave: a worker heard from again is back online
            nursery.cancel_scope.cancel()
        await self.control.leave(self.worker_id)

    def _obey(self, instructions: Instructions, nursery: trio.Nursery | None) -> None:
        for key in instructions.cancel:
            running = self._running.get(key)
            if running is not None:
                running.stop()
        if instructions.drain:
            self.drain()
        for job in instructions.jobs:
            assert nursery is not None
            key = (job.id, job.attempt)
            if key not in self._running and not self._draining:
                running = self._running[key] = _Running(job, JobLog(self, job))
                self._todo.append(running)
                self._wake_runner(nursery)

    async def _heartbeats(self) -> None:
        interval = self.settings.heartbeat_interval_s
        while True:
            with trio.move_on_after(interval):
                await self._beat_now.wait()
            self._beat_now = trio.Event()
            instructions = await self.control.heartbeat(self.worker_id, self.running)
            # the server sets the pace: it slows a large fleet down to keep up with it
            if instructions.heartbeat_interval_s is not None and not self.settings.pinned_heartbeat:
                interval = instructions.heartbeat_interval_s
            self._obey(attrs.evolve(instructions, jobs=()), None)

    async def _flush_logs(self) -> None:
        # One task sends every running job's output, at most one flush interval after it was
        # written; it sleeps while there is nothing to send.
        while True:
            await self.logs_waiting.wait()
            await trio.sleep(self.settings.log_flush_interval_s)
            self.logs_waiting = trio.Event()
            for running in list(self._running.values()):
                try:
                    await running.log.flush()
                except _GONE:
                    # the server gave the job to another life: stop it as a cancel, not a timeout
                    running.stop()

    def _wake_runner(self, nursery: trio.Nursery) -> None:
        # One runner at a time is woken. It wakes the next one only if jobs are left when it
        # takes its own: when jobs end without waiting (in-process, say), the runner already
        # running takes the next one, and the others sleep on.
        if self._waking:
            return
        self._waking = True
        if self._idle_runners:
            trio.lowlevel.reschedule(self._idle_runners.pop())
        else:
            nursery.start_soon(self._runner, nursery)

    async def _runner(self, nursery: trio.Nursery) -> None:
        # Runs the jobs handed to it one after another, then waits for more: a worker keeps as
        # many runners as it ever ran jobs at once. A task and a cancel scope for each job cost
        # more than the rest of a job's bookkeeping in the engine (~30 us together on a small
        # machine), so a runner enters one scope for as many jobs as it can, and leaves it only
        # when the scope went off for a job (a cancelled scope stays cancelled).
        me = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._idle_runners.remove(me)
            return trio.lowlevel.Abort.SUCCEEDED

        self._waking = False
        while True:
            running: _Running | None = None
            late: Outcome | None = None
            with trio.CancelScope() as scope:
                # (a job dropped while its scope went off leaves the scope spent: leave it)
                while late is None and not scope.cancel_called:
                    while not self._todo:
                        self._idle_runners.append(me)
                        await trio.lowlevel.wait_task_rescheduled(abort)
                        self._waking = False
                    running = self._todo.popleft()
                    if self._todo:
                        self._wake_runner(nursery)
                    late = await self._run_job(running, scope, nursery)
                    if late is None:
                        running = None  # done with, reported or dropped
            if running is not None:
                # the scope went off for ``running``: its executor was stopped, or it returned
                # just after the scope went off (``late``)
                await self._end(running, late)

    async def _run_job(
        self, running: _Running, scope: trio.CancelScope, nursery: trio.Nursery
    ) -> Outcome | None:
        """Start, execute and report ``running`` in the runner's ``scope``; returns the outcome
        when the scope went off (a cancel or a timeout) after the executor returned, so that
        the runner reports it from outside the scope. A job whose executor is stopped leaves
        by the ``Cancelled`` exception, which the scope catches."""
        job = running.job
        try:
            if running.log.started is STARTED:
                await self.control.start(self._id, job.id, job.attempt)
            else:
                nursery.start_soon(self._start, running)
            if running.cancelled:
                outcome = Outcome(None, cancelled=True)
            else:
                timeout_s = job.spec.timeout_s
                if timeout_s is not None and running.log.started.is_set():
                    # (else its clock starts when the start is taken: ``_start``)
                    scope.deadline = trio.current_time() + timeout_s
                running.executing = scope
                try:
                    outcome = await self._execute(running)
                finally:
                    running.executing = None
                    if timeout_s is not None:
                        scope.deadline = math.inf
                if scope.cancel_called:
                    return outcome
            if await self._taken(running):
                await self.control.finish(
                    self._id, job.id, job.attempt, outcome, running.log.close()
                )
        except _GONE as exc:
            log.info("job %s attempt %s dropped: %s", job.id, job.attempt, exc)
        self._done(running)
        return None

    async def _start(self, running: _Running) -> None:
        """Report the start of ``running``, whose executor starts meanwhile; a refusal stops
        it (``start_alongside``)."""
        job = running.job
        taken = False
        try:
            await self.control.start(self._id, job.id, job.attempt)
            taken = True
            timeout_s = job.spec.timeout_s
            if timeout_s is not None and running.executing is not None:
                # the time allowed counts from the start the server knows of (its
                # ``started_at``), not from a start still travelling: a slow or unreachable
                # server must not eat into the job's own time, nor time it out unstarted
                running.executing.deadline = trio.current_time() + timeout_s
        except _GONE as exc:
            log.info("job %s attempt %s dropped, its start refused: %s", job.id, job.attempt, exc)
            running.log.drop()
            running.stop()
        finally:
            running.untaken = not taken
            running.log.started.set()
        if running.log.holds_output:
            self.logs_waiting.set()

    @staticmethod
    async def _taken(running: _Running) -> bool:
        """Whether the control plane took the start of ``running``, once it has answered."""
        started = running.log.started
        if not started.is_set():
            await started.wait()
        return not running.untaken

    async def _end(self, running: _Running, late: Outcome | None) -> None:
        """Report a job whose scope went off: with ``late``, what its executor returned, else
        as stopped (cancelled or timed out)."""
        job = running.job
        try:
            outcome = late if late is not None else await self._stopped(running)
            if await self._taken(running):
                await self.control.finish(
                    self._id, job.id, job.attempt, outcome, running.log.close()
                )
        except _GONE as exc:
            log.info("job %s attempt %s dropped: %s", job.id, job.attempt, exc)
        finally:
            self._done(running)

    def _done(self, running: _Running) -> None:
        job = running.job
        del self._running[job.id, job.attempt]
        if self._draining and not self._running:
            self._idle.set()

    async def _execute(self, running: _Running) -> Outcome:
        job = running.job
        try:
            code = await self.executor.run(job, running.log)
            return _SUCCESS if type(code) is int and code == 0 else Outcome(code)
        except ExecutorError as exc:
            await running.log.write(Stream.STDERR, f"hodei: {exc}\n")
            return Outcome(None, error=str(exc))
        except Exception as exc:  # a bug in a user's executor must not kill the worker
            log.exception("executor failed on job %s", job.id)
            await running.log.write(Stream.STDERR, f"hodei: executor error: {exc!r}\n")
            return Outcome(None, error=repr(exc))

    async def _stopped(self, running: _Running) -> Outcome:
        """The outcome of a job whose executor was stopped: cancelled, or timed out."""
        if running.cancelled:
            return Outcome(None, cancelled=True)
        job = running.job
        await running.log.write(Stream.STDERR, f"hodei: timed out after {job.spec.timeout_s:g}s\n")
        return Outcome(None, timed_out=True)
