"""The store contract for placing jobs: assignment, active jobs and admission."""

from __future__ import annotations

import attrs
import trio

from ..._lifecycle import assign, finish, request_cancel
from ..._models import (
    Job,
    JobState,
    Outcome,
    TenantUsage,
    WorkerState,
)
from ...errors import (
    JobNotFound,
    QuotaExceeded,
)
from ...ports import RATE_WINDOW_S, Assignment, JobQuery, Store
from ._support import (
    _T0,
    _assign,
    _by_id,
    _ids,
    _job,
    _raises,
    _recording_admit,
    _register,
    _set_worker_state,
    _start,
)


class AssignmentContract:
    """The store contract for placing jobs: assignment, active jobs and admission.

    Mixed into ``StoreContract``.
    """

    # -- assign_jobs --

    async def test_assign_jobs_assigns_and_returns_jobs(self, store: Store) -> None:
        """An assignment that holds sets ``state``, ``worker_id`` and ``assigned_at=now``,
        and nothing else."""
        w1 = await _register(store, "w1", labels={"linux"})
        job = _job("j1", labels={"linux"})
        await store.add_job(job)
        await store.add_job(_job("j2"))
        assigned = await store.assign_jobs([Assignment("j1", 1, w1.id)], _T0 + 5)
        expected = assign(job, 1, w1.id, _T0 + 5)
        assert expected == attrs.evolve(
            job, state=JobState.ASSIGNED, worker_id=w1.id, assigned_at=_T0 + 5
        )
        assert assigned == [expected]
        assert await store.get_job("j1") == expected
        assert await store.active_jobs(w1.id) == [expected]
        assert _ids(await store.queued_jobs(10)) == ["j2"]

    async def test_assign_jobs_carries_out_a_batch(self, store: Store) -> None:
        """Several assignments to several workers happen together."""
        w1 = await _register(store, "w1")
        w2 = await _register(store, "w2")
        for job_id in ["a", "b", "c"]:
            await store.add_job(_job(job_id))
        batch = [Assignment("a", 1, w1.id), Assignment("b", 1, w2.id), Assignment("c", 1, w1.id)]
        assigned = await store.assign_jobs(batch, _T0 + 1)
        assert {j.id: j.worker_id for j in assigned} == {"a": w1.id, "b": w2.id, "c": w1.id}
        assert all(j.state is JobState.ASSIGNED and j.assigned_at == _T0 + 1 for j in assigned)
        assert sorted(_ids(await store.active_jobs(w1.id))) == ["a", "c"]
        assert _ids(await store.active_jobs(w2.id)) == ["b"]
        assert await store.queued_jobs(10) == []

    async def test_assign_jobs_skips_jobs_no_longer_queued_at_that_attempt(
        self, store: Store
    ) -> None:
        """Only a job still queued at the assignment's attempt is assigned; the rest are
        skipped silently."""
        w1 = await _register(store, "w1", slots=10)
        w2 = await _register(store, "w2", slots=10)
        for job_id in ["stale", "taken", "cancelled", "twice", "ok"]:
            await store.add_job(_job(job_id))
        await _assign(store, "taken", w2.id)
        await store.update_job("cancelled", lambda j: request_cancel(j, _T0))
        batch = [
            Assignment("stale", 2, w1.id),  # the job is at attempt 1
            Assignment("taken", 1, w1.id),  # already assigned to w2
            Assignment("cancelled", 1, w1.id),
            Assignment("unknown", 1, w1.id),
            Assignment("twice", 1, w1.id),
            Assignment("twice", 1, w2.id),  # no longer queued after the one before
            Assignment("ok", 1, w1.id),
        ]
        assigned = await store.assign_jobs(batch, _T0 + 1)
        assert sorted(_ids(assigned)) == ["ok", "twice"]
        assert (await store.get_job("twice")).worker_id == w1.id
        assert (await store.get_job("taken")).worker_id == w2.id
        assert (await store.get_job("stale")).state is JobState.QUEUED
        assert (await store.get_job("cancelled")).state is JobState.CANCELLED
        with _raises(JobNotFound):
            await store.get_job("unknown")

    async def test_assign_jobs_skips_a_requeued_job_at_its_old_attempt(self, store: Store) -> None:
        """After a job was queued again (attempt 2), an assignment of attempt 1 is stale."""
        w1 = await _register(store, "w1")
        await store.add_job(_job("j1", retries=1))
        await _assign(store, "j1", w1.id)
        _, requeued = await store.update_job(
            "j1", lambda j: finish(j, j.attempt, j.worker_id, Outcome(exit_code=1), _T0 + 2)
        )
        assert requeued.state is JobState.QUEUED and requeued.attempt == 2
        assert await store.assign_jobs([Assignment("j1", 1, w1.id)], _T0 + 3) == []
        assert await store.get_job("j1") == requeued
        assigned = await store.assign_jobs([Assignment("j1", 2, w1.id)], _T0 + 4)
        assert assigned == [assign(requeued, 2, w1.id, _T0 + 4)]

    async def test_assign_jobs_needs_an_online_worker(self, store: Store) -> None:
        """Draining, offline, lost and unknown workers get nothing."""
        workers = {}
        for state in [WorkerState.DRAINING, WorkerState.OFFLINE, WorkerState.LOST]:
            worker = await _register(store, f"w-{state.value}")
            workers[state] = await _set_worker_state(store, worker.id, state)
            await store.add_job(_job(f"j-{state.value}"))
        await store.add_job(_job("j-unknown"))
        batch = [Assignment(f"j-{s.value}", 1, w.id) for s, w in workers.items()]
        batch.append(Assignment("j-unknown", 1, "id-nobody"))
        assert await store.assign_jobs(batch, _T0 + 1) == []
        assert len(await store.queued_jobs(10)) == 4
        # Back online, the same worker may take the job.
        await _set_worker_state(store, workers[WorkerState.DRAINING].id, WorkerState.ONLINE)
        assigned = await store.assign_jobs(batch[:1], _T0 + 2)
        assert _ids(assigned) == ["j-draining"]

    async def test_assign_jobs_needs_every_label(self, store: Store) -> None:
        """A worker must have all of the job's labels (it may have more)."""
        w1 = await _register(store, "w1", labels={"linux", "x86"})
        await store.add_job(_job("one", labels={"linux"}))
        await store.add_job(_job("both", labels={"linux", "x86"}))
        await store.add_job(_job("gpu", labels={"linux", "gpu"}))
        await store.add_job(_job("none"))
        batch = [Assignment(j, 1, w1.id) for j in ["one", "both", "gpu", "none"]]
        assigned = await store.assign_jobs(batch, _T0)
        assert sorted(_ids(assigned)) == ["both", "none", "one"]
        assert _ids(await store.queued_jobs(10)) == ["gpu"]

    async def test_assign_jobs_counts_slots_including_the_batch(self, store: Store) -> None:
        """A worker's slots count its active jobs and the assignments before in the batch."""
        w1 = await _register(store, "w1", slots=3)
        for i, job_id in enumerate(["old", "a", "b", "c", "d"]):
            await store.add_job(_job(job_id, _T0 + i))
        await _assign(store, "old", w1.id)
        batch = [Assignment(j, 1, w1.id) for j in ["a", "b", "c", "d"]]
        assigned = await store.assign_jobs(batch, _T0)
        assert sorted(_ids(assigned)) == ["a", "b"]
        assert _ids(await store.queued_jobs(10)) == ["c", "d"]
        # A finished job frees its slot.
        await _start(store, "old")
        await store.update_job(
            "old", lambda j: finish(j, j.attempt, j.worker_id, Outcome(exit_code=0), _T0 + 1)
        )
        assert _ids(await store.assign_jobs(batch, _T0 + 2)) == ["c"]

    async def test_assign_jobs_counts_cpu_and_memory(self, store: Store) -> None:
        """CPU and memory budgets hold across the batch; a job that does not fit is skipped
        and a later smaller one may still fit."""
        w1 = await _register(store, "w1", slots=10, cpu=2.0, memory_mb=1024)
        await store.add_job(_job("big1", cpu=1.5))
        await store.add_job(_job("big2", cpu=1.5))
        await store.add_job(_job("small", cpu=0.5))
        await store.add_job(_job("mem1", memory_mb=600))
        await store.add_job(_job("mem2", memory_mb=600))
        await store.add_job(_job("mem3", memory_mb=424))
        batch = [Assignment(j, 1, w1.id) for j in ["big1", "big2", "small"]]
        batch += [Assignment(j, 1, w1.id) for j in ["mem1", "mem2", "mem3"]]
        assigned = await store.assign_jobs(batch, _T0)
        assert sorted(_ids(assigned)) == ["big1", "mem1", "mem3", "small"]
        assert sorted(_ids(await store.queued_jobs(10))) == ["big2", "mem2"]

    async def test_assign_jobs_with_unmetered_budgets(self, store: Store) -> None:
        """A worker without a CPU or memory budget takes any amount; only slots count."""
        w1 = await _register(store, "w1", slots=2)
        await store.add_job(_job("huge", cpu=64.0, memory_mb=1_000_000))
        await store.add_job(_job("huger", cpu=128.0, memory_mb=2_000_000))
        await store.add_job(_job("third"))
        batch = [Assignment(j, 1, w1.id) for j in ["huge", "huger", "third"]]
        assert sorted(_ids(await store.assign_jobs(batch, _T0))) == ["huge", "huger"]

    async def test_concurrent_assignments_place_a_job_once(self, store: Store) -> None:
        """Two schedulers assigning the same job at once: exactly one wins."""
        w1 = await _register(store, "w1")
        w2 = await _register(store, "w2")
        await store.add_job(_job("j1"))
        results: dict[str, list[Job]] = {}

        async def place(worker_id: str) -> None:
            results[worker_id] = await store.assign_jobs([Assignment("j1", 1, worker_id)], _T0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(place, w1.id)
            nursery.start_soon(place, w2.id)
        winners = [w for w, jobs in results.items() if jobs]
        assert len(winners) == 1, results
        assert (await store.get_job("j1")).worker_id == winners[0]

    # -- active_jobs / active_by_tenant --

    async def test_active_jobs_are_assigned_running_or_cancelling(self, store: Store) -> None:
        """``active_jobs`` lists the worker's assigned, running and cancelling jobs only."""
        w1 = await _register(store, "w1", slots=10)
        w2 = await _register(store, "w2", slots=10)
        for job_id in ["assigned", "running", "cancelling", "done", "queued", "other"]:
            await store.add_job(_job(job_id))
        for job_id in ["assigned", "running", "cancelling", "done"]:
            await _assign(store, job_id, w1.id)
        await _assign(store, "other", w2.id)
        for job_id in ["running", "cancelling", "done"]:
            await _start(store, job_id)
        await store.update_job("cancelling", lambda j: request_cancel(j, _T0))
        await store.update_job(
            "done", lambda j: finish(j, j.attempt, j.worker_id, Outcome(exit_code=0), _T0)
        )
        active = _by_id(await store.active_jobs(w1.id))
        assert sorted(active) == ["assigned", "cancelling", "running"]
        for job_id, job in active.items():
            assert job == await store.get_job(job_id)
        assert active["cancelling"].state is JobState.CANCELLING
        assert _ids(await store.active_jobs(w2.id)) == ["other"]
        assert await store.active_jobs("id-nobody") == []

    async def test_active_by_tenant(self, store: Store) -> None:
        """Active jobs counted per tenant; queued and finished jobs do not count."""
        w1 = await _register(store, "w1", slots=10)
        jobs = [("a1", "ta"), ("a2", "ta"), ("a3", "ta"), ("b1", "tb"), ("c1", "tc")]
        for job_id, tenant in jobs:
            await store.add_job(_job(job_id, tenant=tenant))
        for job_id in ["a1", "a2", "a3", "b1"]:
            await _assign(store, job_id, w1.id)
        await _start(store, "a2")
        await _start(store, "a3")
        await store.update_job("a3", lambda j: request_cancel(j, _T0))
        await _start(store, "b1")
        await store.update_job(
            "b1", lambda j: finish(j, j.attempt, j.worker_id, Outcome(exit_code=1), _T0)
        )

        def nonzero(counts: dict[str, int]) -> dict[str, int]:
            # Whether a tenant with nothing active is left out or listed with 0 is not part of
            # the contract; both read the same.
            return {tenant: n for tenant, n in counts.items() if n}

        assert nonzero(await store.active_by_tenant()) == {"ta": 3}

    # -- admission --

    async def test_add_job_admit_sees_the_tenant_usage(self, store: Store) -> None:
        """``admit`` gets the tenant's queued and active counts and the ``created_at`` of its
        jobs created in the rate window before the new job; other tenants do not count."""
        w1 = await _register(store, "w1", slots=10)
        now = _T0 + 1000
        t1 = [
            ("old", now - 100),  # queued, outside the window
            ("q-61", now - 61),  # queued, outside the window
            ("a-59", now - 59),  # assigned
            ("r-30", now - 30),  # running
            ("x-20", now - 20),  # cancelled: not queued, not active, but submitted recently
            ("q-10", now - 10),  # queued
        ]
        for job_id, created_at in t1:
            await store.add_job(_job(job_id, created_at, tenant="t1"))
        await store.add_job(_job("other-q", now - 5, tenant="t2"))
        await store.add_job(_job("other-a", now - 4, tenant="t2"))
        await _assign(store, "a-59", w1.id)
        await _assign(store, "r-30", w1.id)
        await _start(store, "r-30")
        await _assign(store, "other-a", w1.id)
        await store.update_job("x-20", lambda j: request_cancel(j, now - 15))
        assert RATE_WINDOW_S == 60.0  # the ages above are chosen around it

        seen: list[TenantUsage] = []
        new = _job("new", now, tenant="t1")
        await store.add_job(new, admit=_recording_admit(seen))
        assert seen, "admit was not called"
        usage = seen[-1]
        assert usage.queued == 3
        assert usage.running == 2
        expected = [now - 59, now - 30, now - 20, now - 10]
        assert sorted(usage.recent_submissions) == expected
        assert await store.get_job("new") == new

        seen.clear()
        await store.add_job(_job("t3-first", now, tenant="t3"), admit=_recording_admit(seen))
        assert seen[-1] == TenantUsage(queued=0, running=0, recent_submissions=())

    async def test_add_job_admit_refusal_stores_nothing(self, store: Store) -> None:
        """When ``admit`` raises, its error comes through unchanged and nothing is stored,
        not even as a recent submission."""
        first = _job("first", _T0 + 1)
        await store.add_job(first)
        error = QuotaExceeded("t1", "too many", 1.5)

        def refuse(usage: TenantUsage) -> None:
            raise error

        with _raises(QuotaExceeded) as caught:
            await store.add_job(_job("refused", _T0 + 2), admit=refuse)
        assert caught.value is error
        with _raises(JobNotFound):
            await store.get_job("refused")
        assert await store.list_jobs(JobQuery()) == [first]
        assert await store.queued_jobs(10) == [first]

        seen: list[TenantUsage] = []
        await store.add_job(_job("next", _T0 + 3), admit=_recording_admit(seen))
        assert seen[-1] == TenantUsage(queued=1, running=0, recent_submissions=(_T0 + 1,))
