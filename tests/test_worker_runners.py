"""A worker runs one job after another in the same runner task: a job that was cancelled or
timed out must not spill over into the next one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio
import trio.testing

from hodei_backends import MemoryEventBus, MemoryStore, open_embedded
from hodei_core import (
    Capacity,
    FailureReason,
    Hodei,
    Job,
    JobSpec,
    JobState,
    LogChunk,
    StaleAttempt,
    Stream,
    WorkerRegistration,
)
from hodei_core.ports import Executor, Instructions, LogSink
from hodei_core.testing import ManualExecutor, trio_wall_clock
from hodei_core.worker import InProcessControlPlane, WorkerLoop

from .conftest import FAST


def _one_slot(executor: Executor) -> AbstractAsyncContextManager[Hodei]:
    return open_embedded(
        workers=1, slots=1, executor=executor, clock=trio_wall_clock, worker_settings=FAST
    )


async def test_after_a_cancel_and_a_timeout_the_next_jobs_run_normally(
    autojump_clock: trio.testing.MockClock,
) -> None:
    manual = ManualExecutor()
    async with _one_slot(manual) as hodei:
        cancelled = await hodei.submit(JobSpec(command=["a"]))
        await manual.started(cancelled.id)
        await hodei.cancel(cancelled.id)
        assert (await hodei.wait(cancelled.id)).state is JobState.CANCELLED

        after_cancel = await hodei.submit(JobSpec(command=["b"]))
        await manual.started(after_cancel.id)
        manual.finish(after_cancel.id, 0, output="b\n")
        assert (await hodei.wait(after_cancel.id)).state is JobState.SUCCEEDED
        assert await hodei.log_text(after_cancel.id) == "b\n"

        timed_out = await hodei.submit(JobSpec(command=["c"], timeout_s=5))
        job = await hodei.wait(timed_out.id)
        assert (job.state, job.failure) == (JobState.TIMED_OUT, FailureReason.TIMEOUT)

        # the timeout of the job before is not inherited: this one runs well past 5 s
        after_timeout = await hodei.submit(JobSpec(command=["d"]))
        await manual.started(after_timeout.id)
        await trio.sleep(60)
        manual.finish(after_timeout.id, 0)
        job = await hodei.wait(after_timeout.id)
        assert job.state is JobState.SUCCEEDED
        assert job.finished_at is not None and job.started_at is not None
        assert job.finished_at - job.started_at >= 60


class _Stubborn:
    """Returns 7 when told to stop, as an executor that ignores cancellation would."""

    async def run(self, job: Job, logs: LogSink) -> int:
        if job.spec.command == ("stubborn",):
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                return 7
        return 0


async def test_an_executor_that_returns_after_its_scope_went_off_is_reported_normally(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _one_slot(_Stubborn()) as hodei:
        stubborn = await hodei.submit(JobSpec(command=["stubborn"], timeout_s=1))
        job = await hodei.wait(stubborn.id)
        # what the executor returned is reported, from outside the scope that went off
        assert (job.state, job.exit_code) == (JobState.FAILED, 7)
        for _ in range(3):
            job = await hodei.wait((await hodei.submit(JobSpec(command=["true"]))).id)
            assert job.state is JobState.SUCCEEDED


async def test_jobs_run_side_by_side_up_to_the_slots() -> None:
    manual = ManualExecutor()
    async with open_embedded(
        workers=1, slots=3, executor=manual, clock=trio_wall_clock, worker_settings=FAST
    ) as hodei:
        jobs = [await hodei.submit(JobSpec(command=["x"])) for _ in range(3)]
        for job in jobs:
            await manual.started(job.id)
        assert manual.running == {job.id for job in jobs}
        for job in reversed(jobs):
            manual.finish(job.id, 0)
        for job in jobs:
            assert (await hodei.wait(job.id)).state is JobState.SUCCEEDED


class _RefusesLogsOf:
    """The in-process control plane, but the logs of one job are refused as a stale attempt's,
    as a server that gave the job to another worker refuses them."""

    def __init__(self, inner: InProcessControlPlane, job_name: str) -> None:
        self.inner = inner
        self.job_name = job_name
        self.refused = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def append_logs(
        self, worker_id: str, job_id: str, attempt: int, chunks: Sequence[LogChunk]
    ) -> None:
        if (await self.inner._orchestrator._ctx.store.get_job(job_id)).spec.name == self.job_name:
            self.refused += 1
            raise StaleAttempt(job_id, attempt, attempt + 1)
        await self.inner.append_logs(worker_id, job_id, attempt, chunks)


class _Chatty:
    """Writes more output than one log batch holds, so that the writes themselves send it."""

    async def run(self, job: Job, logs: LogSink) -> int:
        await logs.write(Stream.STDOUT, "x" * 100)
        return 0


@asynccontextmanager
async def _worker_refusing_logs_of(
    job_name: str, executor: Executor
) -> AsyncIterator[tuple[Hodei, WorkerLoop, _RefusesLogsOf]]:
    """An engine with one worker (two slots, a 10-byte log batch) whose control plane refuses
    the output of the jobs named ``job_name``."""
    engine = Hodei(store=MemoryStore(), bus=MemoryEventBus(), clock=trio.current_time)
    async with trio.open_nursery() as nursery, engine.control_plane() as inner:
        await nursery.start(engine.run)
        control = _RefusesLogsOf(inner, job_name)
        settings = attrs.evolve(FAST, log_batch_bytes=10)
        # two slots: the engine still counts a dropped job (a server would have moved it)
        registration = WorkerRegistration(name="w", capacity=Capacity(slots=2))
        loop = WorkerLoop(control, executor, registration, settings=settings)
        await nursery.start(loop.run)
        yield engine, loop, control
        nursery.cancel_scope.cancel()


async def test_a_job_whose_output_is_refused_mid_run_is_dropped_and_the_worker_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _worker_refusing_logs_of("stale", _Chatty()) as (engine, loop, control):
        stale = await engine.submit(JobSpec(command=["x"], name="stale"))
        await trio.sleep(1)
        assert control.refused >= 1
        # dropped by the worker: its runner went on, and no report of it followed
        assert (await engine.get(stale.id)).state is JobState.RUNNING
        assert loop.running == []
        fine = await engine.wait((await engine.submit(JobSpec(command=["x"]))).id)
        assert fine.state is JobState.SUCCEEDED
        assert await engine.log_text(fine.id) == "x" * 100


class _FailsWhenStopped:
    """An executor with a bug: told to stop, it raises instead of letting the cancel through."""

    async def run(self, job: Job, logs: LogSink) -> int:
        if job.spec.name == "stale":
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                raise RuntimeError("clean-up failed") from None
        return 0


async def test_a_job_dropped_after_its_scope_went_off_leaves_no_spent_scope_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # the timeout goes off, the executor raises, its error line is refused: the job is dropped
    # in a scope that went off, and the next job must run in a fresh one
    async with _worker_refusing_logs_of("stale", _FailsWhenStopped()) as (engine, loop, _):
        await engine.submit(JobSpec(command=["x"], name="stale", timeout_s=1))
        await trio.sleep(1.5)  # (the mock clock's time) past the timeout: the job is dropped
        assert loop.running == []
        # the runner that dropped it is the first to take the next job
        after = await engine.submit(JobSpec(command=["x"], name="after"))
        job = await engine.wait(after.id)
        assert (job.state, job.failure) == (JobState.SUCCEEDED, None)


class _HoldsStarts:
    """The in-process control plane, but each start report waits until the test lets it
    through, or refuses it as a stale attempt's (and, as a server that gave the job to another
    worker would, hands it out no more); it records the order of what it was told."""

    def __init__(self, inner: InProcessControlPlane) -> None:
        self.inner = inner
        self.told: list[str] = []
        self.refused: set[str] = set()
        self._answers: dict[str, trio.MemoryReceiveChannel[bool]] = {}
        self._senders: dict[str, trio.MemorySendChannel[bool]] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def _channel(self, job_id: str) -> trio.MemorySendChannel[bool]:
        if job_id not in self._senders:
            self._senders[job_id], self._answers[job_id] = trio.open_memory_channel(1)
        return self._senders[job_id]

    def answer(self, job_id: str, *, take: bool) -> None:
        self._channel(job_id).send_nowait(take)

    async def start(self, worker_id: str, job_id: str, attempt: int) -> None:
        self._channel(job_id)
        if not await self._answers[job_id].receive():
            self.refused.add(job_id)
            self.told.append(f"refused start {job_id}")
            raise StaleAttempt(job_id, attempt, attempt + 1)
        await self.inner.start(worker_id, job_id, attempt)
        self.told.append(f"start {job_id}")

    async def poll(
        self, worker_id: str, running: Sequence[tuple[str, int]], timeout_s: float
    ) -> Instructions:
        instructions = await self.inner.poll(worker_id, running, timeout_s)
        jobs = tuple(job for job in instructions.jobs if job.id not in self.refused)
        return attrs.evolve(instructions, jobs=jobs)

    async def append_logs(
        self, worker_id: str, job_id: str, attempt: int, chunks: Sequence[LogChunk]
    ) -> None:
        self.told.append(f"logs {job_id}")
        await self.inner.append_logs(worker_id, job_id, attempt, chunks)

    async def finish(self, worker_id: str, job_id: str, *args: Any, **kwargs: Any) -> None:
        self.told.append(f"finish {job_id}")
        await self.inner.finish(worker_id, job_id, *args, **kwargs)


@asynccontextmanager
async def _worker_starting_alongside(
    executor: Executor,
) -> AsyncIterator[tuple[Hodei, WorkerLoop, _HoldsStarts]]:
    engine = Hodei(store=MemoryStore(), bus=MemoryEventBus(), clock=trio.current_time)
    async with trio.open_nursery() as nursery, engine.control_plane() as inner:
        await nursery.start(engine.run)
        control = _HoldsStarts(inner)
        settings = attrs.evolve(FAST, log_batch_bytes=10, start_alongside=True)
        registration = WorkerRegistration(name="w", capacity=Capacity(slots=2))
        loop = WorkerLoop(control, executor, registration, settings=settings)
        await nursery.start(loop.run)
        yield engine, loop, control
        nursery.cancel_scope.cancel()


async def test_started_alongside_the_job_runs_before_its_start_is_taken_and_reports_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    manual = ManualExecutor()
    async with _worker_starting_alongside(manual) as (engine, _, control):
        job = await engine.submit(JobSpec(command=["x"]))
        # the executor runs although the start report has no answer yet
        await manual.started(job.id)
        manual.finish(job.id, 0, output="more output than a batch\n")
        await trio.sleep(1)
        assert control.told == []
        assert (await engine.get(job.id)).state is JobState.ASSIGNED
        control.answer(job.id, take=True)
        done = await engine.wait(job.id)
        assert done.state is JobState.SUCCEEDED
        assert await engine.log_text(job.id) == "more output than a batch\n"
        assert control.told[0] == f"start {job.id}"
        assert control.told[-1] == f"finish {job.id}"


async def test_started_alongside_a_refused_start_stops_the_job_and_reports_nothing_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    manual = ManualExecutor()
    async with _worker_starting_alongside(manual) as (engine, loop, control):
        stale = await engine.submit(JobSpec(command=["x"]))
        await manual.started(stale.id)
        control.answer(stale.id, take=False)
        await trio.sleep(1)
        assert stale.id not in manual.running  # stopped
        assert loop.running == []
        assert control.told == [f"refused start {stale.id}"]
        # the runner goes on with the next job
        fine = await engine.submit(JobSpec(command=["x"]))
        control.answer(fine.id, take=True)
        await manual.started(fine.id)
        manual.finish(fine.id, 0)
        assert (await engine.wait(fine.id)).state is JobState.SUCCEEDED


class _SlowToStop:
    """Writes a line at once, then runs until stopped, and takes a while to stop (as a process
    with a SIGTERM handler would), writing a last line meanwhile."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.wrote = trio.Event()

    async def run(self, job: Job, logs: LogSink) -> int:
        self.running.add(job.id)
        try:
            # shorter than a batch (10 bytes here): held back, not waiting for the start
            await logs.write(Stream.STDOUT, "held\n")
            self.wrote.set()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.2)
                await logs.write(Stream.STDERR, "a line written while stopping\n")
            self.running.discard(job.id)
        return 0


async def test_started_alongside_output_held_when_the_start_is_refused_is_never_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow = _SlowToStop()
    async with _worker_starting_alongside(slow) as (engine, loop, control):
        stale = await engine.submit(JobSpec(command=["x"]))
        await slow.wrote.wait()
        control.answer(stale.id, take=False)
        await trio.sleep(5)  # well past the stop, the flush interval and the grace
        assert stale.id not in slow.running
        assert loop.running == []
        assert control.told == [f"refused start {stale.id}"]
        assert await engine.log_text(stale.id) == ""


async def test_started_alongside_the_timeout_counts_from_the_start_being_taken(
    autojump_clock: trio.testing.MockClock,
) -> None:
    manual = ManualExecutor()
    async with _worker_starting_alongside(manual) as (engine, _, control):
        job = await engine.submit(JobSpec(command=["x"], timeout_s=5))
        await manual.started(job.id)
        # a server that takes its time to answer does not eat into the job's 5 s
        await trio.sleep(30)
        assert job.id in manual.running
        control.answer(job.id, take=True)
        await trio.sleep(4)
        assert job.id in manual.running
        done = await engine.wait(job.id)
        assert done.state is JobState.TIMED_OUT
        assert done.finished_at is not None and done.started_at is not None
        assert 5 <= done.finished_at - done.started_at < 6
