"""The store contract for jobs: adding, reading, listing, updating and queueing them."""

from __future__ import annotations

import typing

import attrs
import trio

from ..._lifecycle import request_cancel
from ..._models import (
    FailureReason,
    Job,
    JobSpec,
    JobState,
    LogChunk,
    Resources,
    Stream,
)
from ...errors import (
    JobNotFound,
)
from ...ports import JobQuery, Store
from ._support import (
    _T0,
    _assign,
    _Boom,
    _bump,
    _ids,
    _job,
    _pipeline,
    _raises,
    _register,
    _run,
    _start,
)


class JobsContract:
    """The store contract for jobs: adding, reading, listing, updating and queueing them.

    Mixed into ``StoreContract``.
    """

    # -- add_job / get_job --

    async def test_add_and_get_job_roundtrip_every_field(self, store: Store) -> None:
        """``get_job`` returns exactly what ``add_job`` stored, every field included."""
        worker = await _register(store, "w1")
        pipeline = _pipeline("p1", tenant="team-a")
        await store.add_pipeline(pipeline)
        await store.add_run(_run("r1", pipeline), [])
        queued = Job(
            id="job-full",
            tenant="team-a",
            spec=JobSpec(
                command=("python", "-c", "print('héllo')", ""),
                env={"LEVEL": "full", "EMPTY": "", "UNICODE": "ñ\nline"},
                secrets={"API_KEY": "s3cr3t", "OTHER": "x y"},
                labels=frozenset({"linux", "gpu"}),
                resources=Resources(cpu=1.5, memory_mb=2048),
                timeout_s=600.25,
                retries=3,
                priority=-7,
                name="the build",
            ),
            created_at=_T0 + 0.5,
            run_id="r1",
            step="build",
        )
        finished = Job(
            id="job-finished",
            tenant="team-a",
            spec=JobSpec(script="exit 3\n# ü", timeout_s=None),
            state=JobState.FAILED,
            attempt=2,
            worker_id=worker.id,
            exit_code=3,
            failure=FailureReason.SCRIPT_FAILURE,
            created_at=_T0 + 1.0,
            assigned_at=_T0 + 2.0,
            started_at=_T0 + 3.25,
            finished_at=_T0 + 4.5,
        )
        await store.add_job(queued)
        await store.add_job(finished)
        assert await store.get_job("job-full") == queued
        assert await store.get_job("job-finished") == finished

    async def test_get_unknown_job_raises_job_not_found(self, store: Store) -> None:
        """``get_job`` of an id nobody added raises ``JobNotFound`` naming that id."""
        await store.add_job(_job("j1"))
        with _raises(JobNotFound) as caught:
            await store.get_job("nope")
        assert caught.value.id == "nope"

    # -- list_jobs --

    async def test_list_jobs_filters_in_insertion_order(self, store: Store) -> None:
        """Every criterion of a ``JobQuery`` must hold; results come in the order added."""
        w1 = await _register(store, "w1", slots=10)
        w2 = await _register(store, "w2", slots=10)
        pipeline = _pipeline("p1", tenant="t1")
        await store.add_pipeline(pipeline)
        for i, tenant in enumerate(["t1", "t2", "t1", "t2", "t1"], start=1):
            await store.add_job(_job(f"j{i}", _T0 + i, tenant=tenant))
        run = _run("r1", pipeline, created_at=_T0 + 6)
        await store.add_run(
            run, [_job("j6", _T0 + 6, run_id="r1", step="a"), _job("j7", _T0 + 7, run_id="r1")]
        )
        await store.add_job(_job("j8", _T0 + 8, tenant="t1"))
        await _assign(store, "j2", w1.id)
        await _start(store, "j2")
        await _assign(store, "j3", w1.id)
        await _assign(store, "j4", w2.id)
        await store.update_job("j5", lambda j: request_cancel(j, _T0 + 10))

        async def ids(**criteria: typing.Any) -> list[str]:
            return _ids(await store.list_jobs(JobQuery(**criteria)))

        assert await ids() == ["j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8"]
        assert await ids(tenant="t1") == ["j1", "j3", "j5", "j6", "j7", "j8"]
        assert await ids(tenant="nobody") == []
        assert await ids(states=frozenset({JobState.QUEUED})) == ["j1", "j6", "j7", "j8"]
        active = frozenset({JobState.ASSIGNED, JobState.RUNNING})
        assert await ids(states=active) == ["j2", "j3", "j4"]
        assert await ids(states=frozenset({JobState.CANCELLED})) == ["j5"]
        assert await ids(worker_id=w1.id) == ["j2", "j3"]
        assert await ids(worker_id="id-nobody") == []
        assert await ids(run_id="r1") == ["j6", "j7"]
        assert await ids(tenant="t2", states=frozenset({JobState.RUNNING})) == ["j2"]
        assert await ids(tenant="t1", worker_id=w1.id) == ["j3"]
        queued = frozenset({JobState.QUEUED})
        assert await ids(tenant="t1", run_id="r1", states=queued) == ["j6", "j7"]
        assert await ids(tenant="t2", run_id="r1") == []

    async def test_list_jobs_with_no_states_matches_nothing(self, store: Store) -> None:
        """``states=frozenset()`` is a criterion no job meets (not "any state")."""
        w1 = await _register(store, "w1")
        await store.add_job(_job("j1"))
        await store.add_job(_job("j2"))
        await _assign(store, "j2", w1.id)
        assert await store.list_jobs(JobQuery(states=frozenset())) == []
        assert await store.list_jobs(JobQuery(states=frozenset(), worker_id=w1.id)) == []

    async def test_list_jobs_of_a_worker_keeps_insertion_order(self, store: Store) -> None:
        """Jobs of a worker come in the order they were added, not the order they were
        assigned or changed state."""
        w1 = await _register(store, "w1", slots=10)
        for i, job_id in enumerate(["a", "b", "c"]):
            await store.add_job(_job(job_id, _T0 + i))
        # Assigned in reverse, and one moved on to running, so that neither the order of
        # assignment nor of the last state change is the order of insertion.
        for job_id in ["c", "b", "a"]:
            await _assign(store, job_id, w1.id)
        await _start(store, "b")
        active = frozenset({JobState.ASSIGNED, JobState.RUNNING, JobState.CANCELLING})
        assert _ids(await store.list_jobs(JobQuery(worker_id=w1.id))) == ["a", "b", "c"]
        assert _ids(await store.list_jobs(JobQuery(states=active))) == ["a", "b", "c"]
        by_worker = await store.list_jobs(JobQuery(worker_id=w1.id, states=active))
        assert _ids(by_worker) == ["a", "b", "c"]

    async def test_list_jobs_offset_and_limit(self, store: Store) -> None:
        """``offset`` and ``limit`` page through the matching jobs, after filtering."""
        for i in range(1, 8):
            await store.add_job(_job(f"j{i}", _T0 + i, tenant="t1" if i % 2 else "t2"))

        async def ids(**criteria: typing.Any) -> list[str]:
            return _ids(await store.list_jobs(JobQuery(**criteria)))

        assert await ids(offset=2, limit=3) == ["j3", "j4", "j5"]
        assert await ids(offset=5) == ["j6", "j7"]
        assert await ids(offset=7) == []
        assert await ids(offset=100) == []
        assert await ids(limit=0) == []
        assert await ids(limit=1) == ["j1"]
        assert await ids(tenant="t1", offset=1, limit=2) == ["j3", "j5"]
        assert await ids(tenant="t2", offset=2) == ["j6"]

    # -- update_job --

    async def test_update_job_returns_before_and_after_and_persists(self, store: Store) -> None:
        """``update_job`` stores ``change(job)`` and returns ``(before, after)``."""
        job = _job("j1")
        await store.add_job(job)
        before, after = await store.update_job("j1", lambda j: request_cancel(j, _T0 + 5))
        assert before == job
        assert after == request_cancel(job, _T0 + 5)
        assert await store.get_job("j1") == after
        assert await store.queued_jobs(10) == []
        states = frozenset({JobState.CANCELLED})
        assert await store.list_jobs(JobQuery(states=states)) == [after]

    async def test_update_job_change_error_propagates_and_changes_nothing(
        self, store: Store
    ) -> None:
        """A change function that raises aborts the update; its exception comes out as is."""
        job = _job("j1")
        await store.add_job(job)
        error = _Boom("no")

        def change(j: Job) -> Job:
            raise error

        with _raises(_Boom) as caught:
            await store.update_job("j1", change)
        assert caught.value is error
        assert await store.get_job("j1") == job
        assert await store.queued_jobs(10) == [job]

    async def test_update_job_adds_chunks_to_the_attempt_before_the_change(
        self, store: Store
    ) -> None:
        """``chunks`` go to the log of the attempt the job had before the change (a requeue
        moves it to the next), in the same step; a stored ``seq`` is ignored."""
        await store.add_job(_job("j1"))
        first = [LogChunk(0, Stream.STDOUT, "a", _T0), LogChunk(1, Stream.STDERR, "b", _T0)]
        await store.append_logs("j1", 1, first[:1])

        def requeue(job: Job) -> Job:
            return attrs.evolve(job, attempt=job.attempt + 1)

        before, after = await store.update_job("j1", requeue, first)
        assert (before.attempt, after.attempt) == (1, 2)
        assert await store.read_logs("j1", 1) == first
        assert await store.read_logs("j1", 2) == []

    async def test_update_job_that_fails_adds_no_chunk(self, store: Store) -> None:
        """When ``change`` raises, its chunks are not stored either."""
        await store.add_job(_job("j1"))

        def change(j: Job) -> Job:
            raise _Boom("no")

        with _raises(_Boom):
            await store.update_job("j1", change, [LogChunk(0, Stream.STDOUT, "a", _T0)])
        assert await store.read_logs("j1", 1) == []

    async def test_update_unknown_job_raises_job_not_found(self, store: Store) -> None:
        """``update_job`` of an unknown id raises ``JobNotFound``."""
        with _raises(JobNotFound) as caught:
            await store.update_job("nope", lambda j: j)
        assert caught.value.id == "nope"

    async def test_update_job_priority_reorders_the_queue(self, store: Store) -> None:
        """Any field may change, also one that decides the queue order, and the store keeps
        every view of the job consistent with its new value."""
        await store.add_job(_job("a", _T0 + 1))
        await store.add_job(_job("b", _T0 + 2))
        w1 = await _register(store, "w1")

        def raise_priority(job: Job) -> Job:
            return attrs.evolve(job, spec=attrs.evolve(job.spec, priority=10))

        await store.update_job("b", raise_priority)
        assert _ids(await store.queued_jobs(10)) == ["b", "a"]
        # Moving the job on must still work after the change (it leaves the queue).
        await _assign(store, "b", w1.id)
        assert _ids(await store.queued_jobs(10)) == ["a"]

    async def test_concurrent_updates_lose_nothing(self, store: Store) -> None:
        """Concurrent read-modify-write updates of one job never lose one another."""
        await store.add_job(_job("j1"))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(store.update_job, "j1", _bump)
        assert (await store.get_job("j1")).attempt == 21

    # -- queued_jobs --

    async def test_queued_jobs_priority_then_oldest_first(self, store: Store) -> None:
        """Queued jobs only, highest priority first, then oldest first, at most ``limit``."""
        w1 = await _register(store, "w1")
        for i, (job_id, priority) in enumerate(
            [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 10), ("g", 3), ("h", 3)]
        ):
            await store.add_job(_job(job_id, _T0 + i, priority=priority))
        await store.update_job("f", lambda j: request_cancel(j, _T0 + 10))
        await _assign(store, "g", w1.id)
        assert _ids(await store.queued_jobs(100)) == ["b", "d", "h", "a", "c", "e"]
        assert _ids(await store.queued_jobs(2)) == ["b", "d"]
        assert _ids(await store.queued_jobs(4)) == ["b", "d", "h", "a"]
        assert await store.queued_jobs(0) == []
        jobs = await store.queued_jobs(1)
        assert jobs == [await store.get_job("b")]

    async def test_queued_jobs_of_an_empty_store(self, store: Store) -> None:
        """No jobs, nothing queued."""
        assert await store.queued_jobs(10) == []
