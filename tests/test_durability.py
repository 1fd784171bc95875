"""State survives a restart of the engine on a durable store: nothing accepted is lost."""

from __future__ import annotations

from pathlib import Path

import trio

from hodei_backends import open_embedded
from hodei_core import FailureReason, JobSpec, JobState
from hodei_core.testing import CallableExecutor, ManualExecutor


async def test_queued_and_running_jobs_survive_a_restart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'hodei.db'}"
    manual = ManualExecutor()
    async with open_embedded(store=store, workers=1, slots=2, executor=manual) as hodei:
        running = await hodei.submit(JobSpec(command=["long"], retries=1))
        last_try = await hodei.submit(JobSpec(command=["long"]))
        await manual.started(running.id)
        await manual.started(last_try.id)
        # both slots are busy: these wait in the queue
        queued = [await hodei.submit(JobSpec(command=["t"])) for _ in range(3)]
    # the engine stopped with one job running and others queued; start it again
    ran: list[str] = []

    def run(job):  # type: ignore[no-untyped-def]
        ran.append(job.id)
        return 0

    async with open_embedded(
        store=store, workers=1, slots=4, executor=CallableExecutor(run)
    ) as hodei:
        with trio.fail_after(20):
            jobs = {job.id: await hodei.wait(job.id) for job in [running, *queued]}
            lost = await hodei.wait(last_try.id)
    # the job that was running on the worker that never came back ran again, as attempt 2
    assert (jobs[running.id].state, jobs[running.id].attempt) == (JobState.SUCCEEDED, 2)
    assert all(jobs[job.id].state is JobState.SUCCEEDED for job in queued)
    # the one without retries left fails as lost, and is not run again
    assert (lost.state, lost.failure) == (JobState.FAILED, FailureReason.WORKER_LOST)
    assert last_try.id not in ran
    assert sorted(ran) == sorted({running.id, *(job.id for job in queued)})  # each ran once
