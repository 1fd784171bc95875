"""``DurableStoreContract``: what a store wrote is there again once it is closed and reopened."""

from __future__ import annotations

import attrs

from ..._lifecycle import finish, lose, request_cancel
from ..._models import (
    Job,
    JobSpec,
    JobState,
    LogChunk,
    Outcome,
    Resources,
    Run,
    StepRun,
    StepState,
    Stream,
    WorkerRegistration,
    WorkerState,
)
from ...errors import PipelineNotFound
from ...ports import Assignment, JobQuery
from ._support import (
    _T0,
    StoreOpener,
    _assign,
    _ids,
    _job,
    _keep,
    _pipeline,
    _raises,
    _register,
    _run,
    _set_worker_state,
    _start,
    _step_job,
    _StoreCapabilities,
)


class DurableStoreContract(_StoreCapabilities):
    """The tests of a store that keeps its data when it is closed and opened again.

    Include it, next to ``StoreContract``, in the test class of an adapter that promises it,
    and give that class an ``open_store`` fixture (see the package docstring). Each test
    writes through one store, closes it, and reads through another opened on the same
    location: what the port returns must be the same, down to the last field.
    """

    durable = True

    async def test_reopened_store_keeps_jobs_in_their_state_and_attempt(
        self, open_store: StoreOpener
    ) -> None:
        """Jobs come back in every state, with their attempt (the fencing token: a report of
        an earlier attempt must stay stale), their worker and their times, in the same queue
        order and with the same active counts."""
        async with open_store() as store:
            w1 = await _register(store, "w1", slots=10)
            await store.add_job(
                Job(
                    id="full",
                    tenant="team-a",
                    spec=JobSpec(
                        command=("python", "-c", "print('héllo')"),
                        env={"LEVEL": "full", "UNICODE": "ñ\nline"},
                        secrets={"API_KEY": "s3cr3t"},
                        labels=frozenset({"linux"}),
                        resources=Resources(cpu=1.5, memory_mb=2048),
                        timeout_s=600.25,
                        retries=3,
                        priority=5,
                        name="the build",
                    ),
                    created_at=_T0,
                )
            )
            states = ["assigned", "running", "requeued", "succeeded", "cancelled", "cancelling"]
            for i, job_id in enumerate(states, start=1):
                await store.add_job(_job(job_id, _T0 + i, tenant="t2", retries=1))
            for job_id in ["assigned", "running", "requeued", "succeeded", "cancelling"]:
                await _assign(store, job_id, w1.id, _T0 + 10)
            for job_id in ["running", "succeeded", "cancelling"]:
                await _start(store, job_id, _T0 + 11)
            # lost before it started: attempt 2, and one unstarted loss counted
            await store.update_job("requeued", lambda j: lose(j, _T0 + 12))
            await store.update_job(
                "succeeded", lambda j: finish(j, 1, w1.id, Outcome(exit_code=0), _T0 + 13)
            )
            await store.update_job("cancelled", lambda j: request_cancel(j, _T0 + 14))
            await store.update_job("cancelling", lambda j: request_cancel(j, _T0 + 14))
            jobs = await store.list_jobs(JobQuery())
            queued = await store.queued_jobs(10)
            active = await store.active_jobs(w1.id)
            by_tenant = await store.active_by_tenant()

        by_state = {job.id: job.state for job in jobs}
        assert by_state["requeued"] is JobState.QUEUED, "the test did not set up what it meant"
        async with open_store() as store:
            assert await store.list_jobs(JobQuery()) == jobs
            for job in jobs:
                assert await store.get_job(job.id) == job
            assert await store.queued_jobs(10) == queued
            assert await store.active_jobs(w1.id) == active
            assert await store.active_by_tenant() == by_tenant
            requeued = await store.get_job("requeued")
            assert (requeued.attempt, requeued.unstarted_losses) == (2, 1)
            assert await store.assign_jobs([Assignment("requeued", 1, w1.id)], _T0 + 20) == []
            again = await store.assign_jobs([Assignment("requeued", 2, w1.id)], _T0 + 20)
            assert _ids(again) == ["requeued"]

    async def test_reopened_store_keeps_the_log_of_each_attempt(
        self, open_store: StoreOpener
    ) -> None:
        """Each attempt's chunks come back in ``seq`` order, those that came with an update
        too; a chunk resent after reopening is still recognised as stored."""
        first = [LogChunk(0, Stream.STDOUT, "out\n", _T0), LogChunk(1, Stream.STDERR, "ërr", _T0)]
        last = [LogChunk(2, Stream.STDOUT, "the end", _T0 + 2)]
        second = [LogChunk(0, Stream.STDOUT, "again", _T0 + 3)]
        async with open_store() as store:
            w1 = await _register(store, "w1")
            await store.add_job(_job("j1", retries=1))
            await store.add_job(_job("j2"))
            await _assign(store, "j1", w1.id)
            await _start(store, "j1")
            await store.append_logs("j1", 1, first)
            # the attempt fails with its last output, and the job is queued again (attempt 2)
            _, failed = await store.update_job(
                "j1", lambda j: finish(j, 1, w1.id, Outcome(exit_code=1), _T0 + 2), last
            )
            assert failed.attempt == 2
            await store.append_logs("j1", 2, second)

        async with open_store() as store:
            assert await store.read_logs("j1", 1) == first + last
            assert await store.read_logs("j1", 2) == second
            assert await store.read_logs("j2", 1) == []
            await store.append_logs("j1", 1, [LogChunk(1, Stream.STDOUT, "resent", _T0 + 9)])
            assert await store.read_logs("j1", 1, from_seq=1) == first[1:] + last

    async def test_reopened_store_keeps_its_workers(self, open_store: StoreOpener) -> None:
        """Workers come back in their state, with their capacity and last heartbeat, and
        what their jobs use; a name stays taken: registering it again updates its worker."""
        async with open_store() as store:
            w1 = await _register(store, "w1", labels=["linux"], slots=2, cpu=4.0, memory_mb=1024)
            w2 = await _register(store, "w2", now=_T0 + 1)
            w3 = await _register(store, "w3", now=_T0 + 2)
            await _set_worker_state(store, w2.id, WorkerState.DRAINING)
            await store.leave_worker(w3.id, _keep)
            await store.touch_workers([w1.id], _T0 + 5)
            await store.add_job(_job("j1", labels=["linux"], cpu=1.0, memory_mb=256))
            await _assign(store, "j1", w1.id)
            workers = await store.list_workers()
            views = await store.worker_views()

        assert [w.state for w in workers] == [
            WorkerState.ONLINE,
            WorkerState.DRAINING,
            WorkerState.OFFLINE,
        ], "the test did not set up what it meant"
        async with open_store() as store:
            assert await store.list_workers() == workers
            for worker in workers:
                assert await store.get_worker(worker.id) == worker
            assert await store.worker_views() == views
            again, created, _ = await store.register_worker(
                WorkerRegistration(name="w3"), "id-new", _T0 + 9, _keep
            )
            assert (again.id, created, again.state) == (w3.id, False, WorkerState.ONLINE)
            assert _ids(await store.list_workers()) == [w1.id, w2.id, w3.id]

    async def test_reopened_store_keeps_pipelines_and_runs(self, open_store: StoreOpener) -> None:
        """Pipelines (less the deleted ones), runs as last changed, and the jobs of their
        steps come back."""
        p1, p2 = _pipeline("p1"), _pipeline("p2", tenant="t2", created_at=_T0 + 1)
        p3 = _pipeline("p3", created_at=_T0 + 2)
        async with open_store() as store:
            for pipeline in (p1, p2, p3):
                await store.add_pipeline(pipeline)
            run = _run("r1", p1)
            build = _step_job(run, "build")
            await store.add_run(run, [build])
            await store.add_run(_run("r2", p2, created_at=_T0 + 3), [])
            await store.delete_pipeline("p2")
            test = _step_job(run, "test", _T0 + 4)

            def next_step(r: Run) -> tuple[Run, list[Job]]:
                steps = (
                    StepRun("build", StepState.SUCCEEDED, job_id=build.id),
                    StepRun("test", StepState.RUNNING, job_id=test.id),
                )
                return attrs.evolve(r, steps=steps, cancel_requested=True), [test]

            await store.update_run("r1", next_step)
            runs = await store.list_runs()

        async with open_store() as store:
            assert await store.list_pipelines() == [p1, p3]
            assert await store.get_pipeline("p3") == p3
            with _raises(PipelineNotFound):
                await store.get_pipeline("p2")
            assert await store.list_runs() == runs
            for run in runs:
                assert await store.get_run(run.id) == run
            assert await store.list_runs("p2") == [runs[1]]
            assert await store.list_jobs(JobQuery(run_id="r1")) == [build, test]
