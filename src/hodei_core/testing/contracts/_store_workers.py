"""The store contract for workers: registration, updates, views and losing them."""

from __future__ import annotations

import attrs

from ..._lifecycle import finish, lose, request_cancel, transition_worker
from ..._models import (
    Capacity,
    FailureReason,
    Job,
    JobState,
    Outcome,
    Worker,
    WorkerRegistration,
    WorkerState,
    WorkerView,
)
from ...errors import (
    WorkerNotFound,
)
from ...ports import JobQuery, Store
from ._support import (
    _T0,
    _assign,
    _Boom,
    _by_id,
    _ids,
    _job,
    _keep,
    _raises,
    _register,
    _set_worker_state,
    _start,
)


class WorkersContract:
    """The store contract for workers: registration, updates, views and losing them.

    Mixed into ``StoreContract``.
    """

    # -- workers --

    async def test_register_worker_creates_it_online(self, store: Store) -> None:
        """A new name creates a worker with ``new_id``, online, heard from ``now``."""
        registration = WorkerRegistration(
            name="builder-1",
            labels=frozenset({"linux", "gpu"}),
            capacity=Capacity(slots=3, cpu=2.5, memory_mb=2048),
            version="1.2.3",
            hostname="host-a",
        )
        worker, created, _ = await store.register_worker(registration, "wid-1", _T0 + 1, _keep)
        assert created
        assert worker == Worker(
            id="wid-1",
            name="builder-1",
            labels=frozenset({"linux", "gpu"}),
            capacity=Capacity(slots=3, cpu=2.5, memory_mb=2048),
            state=WorkerState.ONLINE,
            last_heartbeat=_T0 + 1,
            registered_at=_T0 + 1,
            version="1.2.3",
            hostname="host-a",
        )
        assert await store.get_worker("wid-1") == worker
        assert await store.list_workers() == [worker]

    async def test_register_worker_again_updates_it_by_name(self, store: Store) -> None:
        """Registering a known name updates that worker (same id) instead of adding one."""
        first = await _register(store, "w1", labels={"linux"}, slots=1, now=_T0)
        registration = WorkerRegistration(
            name="w1",
            labels=frozenset({"arm"}),
            capacity=Capacity(slots=8, cpu=4.0, memory_mb=512),
            version="2.0",
            hostname="host-b",
        )
        worker, created, _ = await store.register_worker(registration, "id-other", _T0 + 50, _keep)
        assert not created
        assert worker == attrs.evolve(
            first,
            labels=frozenset({"arm"}),
            capacity=Capacity(slots=8, cpu=4.0, memory_mb=512),
            version="2.0",
            hostname="host-b",
            last_heartbeat=_T0 + 50,
        )
        assert await store.get_worker(first.id) == worker
        assert await store.list_workers() == [worker]
        with _raises(WorkerNotFound):
            await store.get_worker("id-other")

    async def test_register_worker_brings_it_back_online(self, store: Store) -> None:
        """A draining, offline or lost worker that registers again is online."""
        for state in [WorkerState.DRAINING, WorkerState.OFFLINE, WorkerState.LOST]:
            name = f"w-{state.value}"
            worker = await _register(store, name)
            await _set_worker_state(store, worker.id, state)
            again, created, _ = await store.register_worker(
                WorkerRegistration(name=name), "id-new", _T0 + 9, _keep
            )
            assert not created
            assert again.id == worker.id
            assert again.state is WorkerState.ONLINE
            assert again.last_heartbeat == _T0 + 9
            assert await store.get_worker(worker.id) == again

    async def test_list_workers_in_order_of_first_registration(self, store: Store) -> None:
        """Workers are listed in the order they first registered; re-registering keeps the
        place."""
        for name in ["c", "a", "b"]:
            await _register(store, name)
        await store.register_worker(WorkerRegistration(name="c"), "id-again", _T0 + 1, _keep)
        assert [w.name for w in await store.list_workers()] == ["c", "a", "b"]
        assert _ids(await store.list_workers()) == ["id-c", "id-a", "id-b"]

    async def test_get_or_update_unknown_worker_raises(self, store: Store) -> None:
        """``get_worker`` and ``update_worker`` of an unknown id raise ``WorkerNotFound``."""
        await _register(store, "w1")
        with _raises(WorkerNotFound) as caught:
            await store.get_worker("nope")
        assert caught.value.id == "nope"
        with _raises(WorkerNotFound):
            await store.update_worker("nope", lambda w: w)

    async def test_update_worker_returns_before_and_after_and_persists(self, store: Store) -> None:
        """``update_worker`` stores ``change(worker)`` and returns ``(before, after)``."""
        worker = await _register(store, "w1")
        before, after = await store.update_worker(
            worker.id, lambda w: transition_worker(w, WorkerState.DRAINING, last_heartbeat=_T0 + 7)
        )
        assert before == worker
        assert after == attrs.evolve(worker, state=WorkerState.DRAINING, last_heartbeat=_T0 + 7)
        assert await store.get_worker(worker.id) == after
        assert await store.list_workers() == [after]

    async def test_update_worker_change_error_changes_nothing(self, store: Store) -> None:
        """A change function that raises aborts; its exception comes out unchanged."""
        worker = await _register(store, "w1")
        error = _Boom("no")

        def change(w: Worker) -> Worker:
            raise error

        with _raises(_Boom) as caught:
            await store.update_worker(worker.id, change)
        assert caught.value is error
        assert await store.get_worker(worker.id) == worker

    async def test_touch_workers_refreshes_only_workers_expected_to_speak(
        self, store: Store
    ) -> None:
        """``touch_workers`` moves ``last_heartbeat`` forward on online and draining workers
        only, never back; lost, offline and unknown ids are left alone."""
        online = await _register(store, "w-online")
        draining = await _set_worker_state(
            store, (await _register(store, "w-draining")).id, WorkerState.DRAINING
        )
        lost = await _set_worker_state(
            store, (await _register(store, "w-lost")).id, WorkerState.LOST
        )
        offline = await _set_worker_state(
            store, (await _register(store, "w-offline")).id, WorkerState.OFFLINE
        )
        untouched = await _register(store, "w-not-named")
        ids = [online.id, draining.id, lost.id, offline.id, "nope"]
        await store.touch_workers(ids, _T0 + 10)
        await store.touch_workers([online.id], _T0 + 5)  # late: no step back
        await store.touch_workers([], _T0 + 20)
        assert await store.list_workers() == [
            attrs.evolve(online, last_heartbeat=_T0 + 10),
            attrs.evolve(draining, last_heartbeat=_T0 + 10),
            lost,
            offline,
            untouched,
        ]

    async def test_worker_views_count_active_jobs_of_online_workers(self, store: Store) -> None:
        """One view per online worker, with the slots, CPU and memory its active jobs use."""
        w1 = await _register(store, "w1", slots=4, cpu=4.0, memory_mb=4096)
        w2 = await _register(store, "w2", slots=2)
        for state in [WorkerState.DRAINING, WorkerState.OFFLINE, WorkerState.LOST]:
            worker = await _register(store, f"w-{state.value}")
            await store.add_job(_job(f"j-{state.value}", cpu=1.0))
            await _assign(store, f"j-{state.value}", worker.id)
            await _set_worker_state(store, worker.id, state)
        specs = {
            "assigned": (1.0, 512),
            "running": (0.5, 256),
            "cancelling": (0.25, 128),
            "done": (2.0, 1024),
            "queued": (3.0, 3000),
        }
        for job_id, (cpu, memory_mb) in specs.items():
            await store.add_job(_job(job_id, cpu=cpu, memory_mb=memory_mb))
        for job_id in ["assigned", "running", "cancelling", "done"]:
            await _assign(store, job_id, w1.id)
        for job_id in ["running", "cancelling", "done"]:
            await _start(store, job_id)
        await store.update_job("cancelling", lambda j: request_cancel(j, _T0))
        await store.update_job(
            "done", lambda j: finish(j, j.attempt, j.worker_id, Outcome(exit_code=0), _T0)
        )
        views = {view.id: view for view in await store.worker_views()}
        assert views == {
            w1.id: WorkerView(w1, used_slots=3, used_cpu=1.75, used_memory_mb=896),
            w2.id: WorkerView(w2),
        }

    async def test_register_worker_again_releases_its_active_jobs(self, store: Store) -> None:
        """A known name registering again (a restarted agent) has each of its active jobs
        replaced by ``release(job)`` in the same step; other workers' jobs stay."""
        w1 = await _register(store, "w1", slots=4, now=_T0)
        w2 = await _register(store, "w2", slots=4, now=_T0)
        for job_id, worker in [("a", w1), ("b", w1), ("other", w2)]:
            await store.add_job(_job(job_id, retries=1))
            await _assign(store, job_id, worker.id)
        await _start(store, "b")
        before = {job.id: job for job in await store.list_jobs(JobQuery())}
        worker, created, released = await store.register_worker(
            WorkerRegistration(name="w1"), "id-new", _T0 + 5, lambda j: lose(j, _T0 + 5)
        )
        assert (worker.id, created) == (w1.id, False)
        expected = {i: lose(before[i], _T0 + 5) for i in ["a", "b"]}
        assert _by_id(released) == expected
        assert all(job.state is JobState.QUEUED and job.attempt == 2 for job in released)
        assert await store.active_jobs(w1.id) == []
        assert await store.get_job("other") == before["other"]
        assert sorted(_ids(await store.queued_jobs(10))) == ["a", "b"]

    async def test_leave_worker_goes_offline_and_releases_its_jobs(self, store: Store) -> None:
        """``leave_worker`` marks the worker offline and replaces each of its active jobs by
        ``release(job)``, atomically; leaving again changes nothing more."""
        worker = await _register(store, "w1", slots=4, now=_T0)
        await store.add_job(_job("a"))
        await store.add_job(_job("b"))
        await _assign(store, "a", worker.id)
        job = await _start(store, "a")
        unstarted = await _assign(store, "b", worker.id)
        left, released = await store.leave_worker(worker.id, lambda j: lose(j, _T0 + 1))
        assert left == attrs.evolve(worker, state=WorkerState.OFFLINE)
        assert await store.get_worker(worker.id) == left
        assert _by_id(released) == {"a": lose(job, _T0 + 1), "b": lose(unstarted, _T0 + 1)}
        assert _by_id(released)["a"].failure is FailureReason.WORKER_LOST
        # the one that had not started is queued again, and the store keeps count of that
        requeued = await store.get_job("b")
        assert (requeued.state, requeued.attempt, requeued.unstarted_losses) == (
            JobState.QUEUED, 2, 1,
        )  # fmt: skip
        assert await store.active_jobs(worker.id) == []
        assert await store.worker_views() == []
        assert await store.leave_worker(worker.id, _keep) == (left, [])
        with _raises(WorkerNotFound):
            await store.leave_worker("nope", _keep)

    # -- lose_worker --

    async def test_lose_worker_marks_it_lost_and_changes_its_active_jobs(
        self, store: Store
    ) -> None:
        """A stale worker is marked lost and each of its active jobs replaced by
        ``change(job)``; other jobs and workers stay as they were."""
        w1 = await _register(store, "w1", slots=10, now=_T0)
        w2 = await _register(store, "w2", slots=10, now=_T0)
        await store.add_job(_job("retry", retries=1))
        await store.add_job(_job("fail"))
        await store.add_job(_job("cancelling"))
        await store.add_job(_job("done"))
        await store.add_job(_job("queued"))
        await store.add_job(_job("elsewhere"))
        for job_id in ["retry", "fail", "cancelling", "done"]:
            await _assign(store, job_id, w1.id)
        await _assign(store, "elsewhere", w2.id)
        for job_id in ["fail", "cancelling", "done"]:
            await _start(store, job_id)
        await store.update_job("cancelling", lambda j: request_cancel(j, _T0))
        await store.update_job(
            "done", lambda j: finish(j, j.attempt, j.worker_id, Outcome(exit_code=0), _T0)
        )
        before = {job.id: job for job in await store.list_jobs(JobQuery())}

        result = await store.lose_worker(w1.id, _T0 + 30, lambda j: lose(j, _T0 + 40))

        assert result is not None
        lost, changed = result
        assert lost == attrs.evolve(w1, state=WorkerState.LOST)
        assert await store.get_worker(w1.id) == lost
        expected = {i: lose(before[i], _T0 + 40) for i in ["retry", "fail", "cancelling"]}
        assert _by_id(changed) == expected
        assert expected["retry"].state is JobState.QUEUED and expected["retry"].attempt == 2
        assert expected["fail"].failure is FailureReason.WORKER_LOST
        assert expected["cancelling"].state is JobState.CANCELLED
        for job_id, job in expected.items():
            assert await store.get_job(job_id) == job
        for job_id in ["done", "queued", "elsewhere"]:
            assert await store.get_job(job_id) == before[job_id]
        assert await store.active_jobs(w1.id) == []
        assert _ids(await store.active_jobs(w2.id)) == ["elsewhere"]
        # Which of the two comes first is not settled: both were created at the same time, and
        # "retry" was queued again later.
        assert sorted(_ids(await store.queued_jobs(10))) == ["queued", "retry"]
        assert [view.id for view in await store.worker_views()] == [w2.id]
        assert await store.get_worker(w2.id) == w2

    async def test_lose_worker_while_draining(self, store: Store) -> None:
        """A draining worker can be lost too; one without active jobs changes no job."""
        worker = await _register(store, "w1", now=_T0)
        draining = await _set_worker_state(store, worker.id, WorkerState.DRAINING)
        result = await store.lose_worker(worker.id, _T0 + 1, lambda j: lose(j, _T0 + 1))
        assert result == (attrs.evolve(draining, state=WorkerState.LOST), [])

    async def test_lose_worker_heard_from_recently_changes_nothing(self, store: Store) -> None:
        """A worker last heard from at or after ``stale_before`` is not lost."""
        worker = await _register(store, "w1", now=_T0 + 10)
        await store.add_job(_job("j1"))
        job = await _assign(store, "j1", worker.id)
        for stale_before in [_T0 + 10, _T0 + 5]:
            result = await store.lose_worker(worker.id, stale_before, lambda j: lose(j, _T0 + 20))
            assert result is None
        assert await store.get_worker(worker.id) == worker
        assert await store.get_job("j1") == job

    async def test_lose_worker_offline_or_lost_changes_nothing(self, store: Store) -> None:
        """Only online or draining workers can be lost."""
        for state in [WorkerState.OFFLINE, WorkerState.LOST]:
            worker = await _register(store, f"w-{state.value}", now=_T0)
            gone = await _set_worker_state(store, worker.id, state)
            result = await store.lose_worker(worker.id, _T0 + 100, lambda j: lose(j, _T0))
            assert result is None
            assert await store.get_worker(worker.id) == gone

    async def test_lose_worker_change_error_changes_nothing(self, store: Store) -> None:
        """When ``change`` raises for any job, neither the worker nor any job changes."""
        worker = await _register(store, "w1", now=_T0)
        for job_id in ["a", "b", "c"]:
            await store.add_job(_job(job_id))
            await _assign(store, job_id, worker.id)
        before = await store.list_jobs(JobQuery())
        error = _Boom("no")

        def change(job: Job) -> Job:
            if job.id == "b":
                raise error
            return lose(job, _T0 + 50)

        with _raises(_Boom) as caught:
            await store.lose_worker(worker.id, _T0 + 30, change)
        assert caught.value is error
        assert await store.get_worker(worker.id) == worker
        assert await store.list_jobs(JobQuery()) == before
        assert sorted(_ids(await store.active_jobs(worker.id))) == ["a", "b", "c"]

    async def test_lose_unknown_worker_raises(self, store: Store) -> None:
        """``lose_worker`` of an unknown id raises ``WorkerNotFound``."""
        with _raises(WorkerNotFound):
            await store.lose_worker("nope", _T0, lambda j: j)

    async def test_worker_views_with_room_leave_out_full_workers(self, store: Store) -> None:
        """``with_room`` keeps the online workers that have a free slot, in registration order."""
        full = await _register(store, "full", slots=1)
        roomy = await _register(store, "roomy", slots=2)
        idle = await _register(store, "idle", slots=1)
        for job_id, worker in [("j1", full), ("j2", roomy)]:
            await store.add_job(_job(job_id))
            await _assign(store, job_id, worker.id)
        views = await store.worker_views(with_room=True)
        assert [(v.id, v.used_slots) for v in views] == [(roomy.id, 1), (idle.id, 0)]
        # a finished job frees its slot
        await store.update_job("j1", lambda j: request_cancel(j, _T0))
        views = await store.worker_views(with_room=True)
        assert [v.id for v in views] == [full.id, roomy.id, idle.id]
        # a worker that is not online has no room, whatever its slots
        await _set_worker_state(store, idle.id, WorkerState.DRAINING)
        assert [v.id for v in await store.worker_views(with_room=True)] == [full.id, roomy.id]
