"""A worker runs one job after another in the same runner task: a job that was cancelled or
timed out must not spill over into the next one."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import trio
import trio.testing

from hodei_backends import open_embedded
from hodei_core import FailureReason, Hodei, Job, JobSpec, JobState
from hodei_core.ports import Executor, LogSink
from hodei_core.testing import ManualExecutor, trio_wall_clock

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
