"""``CrossProcessStoreContract``: several stores open on one location share one state."""

from __future__ import annotations

import attrs
import trio

from ..._models import (
    Job,
    LogChunk,
    Run,
    StepRun,
    StepState,
    Stream,
    Worker,
    WorkerRegistration,
    WorkerState,
)
from ...ports import Assignment, JobQuery, Store
from ._support import (
    _T0,
    StoreOpener,
    _assign,
    _bump,
    _ids,
    _job,
    _keep,
    _pipeline,
    _register,
    _run,
    _set_worker_state,
    _start,
    _step_job,
    _StoreCapabilities,
)


class CrossProcessStoreContract(_StoreCapabilities):
    """The tests of a store that several processes may open on one location at once (e.g. one
    database behind several servers).

    Include it, next to ``StoreContract``, in the test class of an adapter that promises it,
    and give that class an ``open_store`` fixture (see the package docstring). Each test opens
    two stores on the same location at once, in the test's own process: they must behave as
    one store, also when both change the same rows at the same moment. (Whether two
    *processes* do is for the adapter's own tests; the suite cannot start processes.)
    """

    cross_process = True

    async def test_two_stores_see_each_others_jobs_and_workers(
        self, open_store: StoreOpener
    ) -> None:
        """What one store writes, the other reads at once: jobs, workers, assignments, and
        every later change of them."""
        async with open_store() as a, open_store() as b:
            await a.add_job(_job("j1", labels=["linux"]))
            assert await b.get_job("j1") == await a.get_job("j1")
            assert _ids(await b.queued_jobs(10)) == ["j1"]
            w1 = await _register(b, "w1", labels=["linux"])
            assert await a.list_workers() == [w1]
            assert [view.worker for view in await a.worker_views(with_room=True)] == [w1]

            assigned = await _assign(a, "j1", w1.id)
            assert await b.get_job("j1") == assigned
            assert await b.active_jobs(w1.id) == [assigned]
            assert await b.queued_jobs(10) == []
            assert await b.active_by_tenant() == {"t1": 1}
            started = await _start(b, "j1")
            assert await a.list_jobs(JobQuery(worker_id=w1.id)) == [started]

            draining = await _set_worker_state(a, w1.id, WorkerState.DRAINING)
            assert await b.get_worker(w1.id) == draining
            assert await b.worker_views() == []

    async def test_two_stores_see_each_others_pipelines_runs_and_logs(
        self, open_store: StoreOpener
    ) -> None:
        """The same for pipelines, runs (and the jobs they add) and log chunks; a chunk one
        store stored is a resend for the other."""
        async with open_store() as a, open_store() as b:
            pipeline = _pipeline("p1")
            await a.add_pipeline(pipeline)
            assert await b.list_pipelines() == [pipeline]
            run = _run("r1", pipeline)
            build = _step_job(run, "build")
            await b.add_run(run, [build])
            assert await a.get_run("r1") == run
            assert await a.get_job(build.id) == build

            test = _step_job(run, "test", _T0 + 1)

            def next_step(r: Run) -> tuple[Run, list[Job]]:
                steps = (
                    StepRun("build", StepState.SUCCEEDED, job_id=build.id),
                    StepRun("test", StepState.RUNNING, job_id=test.id),
                )
                return attrs.evolve(r, steps=steps), [test]

            changed, _ = await a.update_run("r1", next_step)
            assert await b.list_runs("p1") == [changed]
            assert await b.list_jobs(JobQuery(run_id="r1")) == [build, test]

            chunks = [LogChunk(0, Stream.STDOUT, "out", _T0), LogChunk(1, Stream.STDERR, "e", _T0)]
            await a.append_logs(build.id, 1, chunks[:1])
            await b.append_logs(build.id, 1, [LogChunk(0, Stream.STDOUT, "resent", _T0)])
            await b.append_logs(build.id, 1, chunks[1:])
            assert await a.read_logs(build.id, 1) == chunks

            await b.delete_pipeline("p1")
            assert await a.list_pipelines() == []

    async def test_a_job_is_assigned_once_through_two_stores(self, open_store: StoreOpener) -> None:
        """Two stores claiming the same jobs at once, each for its own worker: every job is
        assigned exactly once, to the worker whose claim returned it, as both stores see."""
        job_ids = [f"j{i:02}" for i in range(20)]
        async with open_store() as a, open_store() as b:
            for i, job_id in enumerate(job_ids):
                await a.add_job(_job(job_id, _T0 + i))
            wa = await _register(a, "wa", slots=len(job_ids))
            wb = await _register(b, "wb", slots=len(job_ids))
            claimed: dict[str, list[str]] = {wa.id: [], wb.id: []}

            async def claim(store: Store, worker: Worker, job_id: str) -> None:
                assigned = await store.assign_jobs([Assignment(job_id, 1, worker.id)], _T0 + 50)
                claimed[worker.id] += _ids(assigned)

            async with trio.open_nursery() as nursery:
                for job_id in job_ids:
                    nursery.start_soon(claim, a, wa, job_id)
                    nursery.start_soon(claim, b, wb, job_id)

            assert sorted(claimed[wa.id] + claimed[wb.id]) == job_ids
            for store in (a, b):
                for worker_id, ids in claimed.items():
                    jobs = await store.list_jobs(JobQuery(worker_id=worker_id))
                    assert sorted(_ids(jobs)) == sorted(ids)

    async def test_two_stores_share_each_workers_room(self, open_store: StoreOpener) -> None:
        """Two stores filling the one free slot of the same workers at once, each with another
        job: each worker gets one job, never two."""
        async with open_store() as a, open_store() as b:
            workers = [await _register(a, f"w{i}", slots=1) for i in range(5)]
            for i in range(10):
                await a.add_job(_job(f"j{i}", _T0 + i))

            async with trio.open_nursery() as nursery:
                for i, worker in enumerate(workers):
                    first = [Assignment(f"j{i}", 1, worker.id)]
                    other = [Assignment(f"j{i + 5}", 1, worker.id)]
                    nursery.start_soon(a.assign_jobs, first, _T0 + 20)
                    nursery.start_soon(b.assign_jobs, other, _T0 + 20)

            for worker in workers:
                assert len(await b.active_jobs(worker.id)) == 1, worker.name
            assert [view.used_slots for view in await a.worker_views()] == [1] * 5
            assert len(await b.queued_jobs(100)) == 5

    async def test_concurrent_updates_through_two_stores_lose_nothing(
        self, open_store: StoreOpener
    ) -> None:
        """Read-modify-write updates of one job through two stores at once never lose one
        another."""
        async with open_store() as a, open_store() as b:
            await a.add_job(_job("j1"))

            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(a.update_job, "j1", _bump)
                    nursery.start_soon(b.update_job, "j1", _bump)
            assert (await a.get_job("j1")).attempt == (await b.get_job("j1")).attempt == 21

    async def test_one_name_registered_through_two_stores_is_one_worker(
        self, open_store: StoreOpener
    ) -> None:
        """Two agents of one name registering at once through two stores make one worker:
        one registration creates it, the other updates it."""
        async with open_store() as a, open_store() as b:
            results: list[tuple[Worker, bool]] = []

            async def register(store: Store, new_id: str) -> None:
                registration = WorkerRegistration(name="w", hostname=new_id)
                worker, created, _ = await store.register_worker(registration, new_id, _T0, _keep)
                results.append((worker, created))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(register, a, "id-a")
                nursery.start_soon(register, b, "id-b")

            assert sorted(created for _, created in results) == [False, True]
            (worker_id,) = {worker.id for worker, _ in results}
            assert _ids(await a.list_workers()) == _ids(await b.list_workers()) == [worker_id]
