"""The embedded engine end to end, with in-process workers and jobs the test controls."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.lowlevel
import trio.testing

from hodei_backends import MemoryEventBus, MemoryStore, open_embedded
from hodei_core import (
    Capacity,
    FailureReason,
    Hodei,
    Job,
    JobAlreadyFinished,
    JobNotFound,
    JobSpec,
    JobSpecInvalid,
    JobState,
    Outcome,
    QuotaExceeded,
    Resources,
    StaleAttempt,
    TenantQuota,
    WorkerRegistration,
    WorkerState,
)
from hodei_core.policies import BinPack, FirstFit, LeastLoaded
from hodei_core.ports import Instructions
from hodei_core.testing import CallableExecutor, ManualExecutor, trio_wall_clock
from hodei_core.worker import InProcessControlPlane, WorkerLoop, WorkerSettings

from .conftest import FAST

TRUE = JobSpec(command=["true"])


async def test_submit_run_and_wait(engine: Hodei, manual: ManualExecutor) -> None:
    job = await engine.submit(JobSpec(command=["build"], name="build"))
    assert job.state is JobState.QUEUED and job.attempt == 1
    await manual.started(job.id)
    assert (await engine.get(job.id)).state is JobState.RUNNING
    manual.finish(job.id, 0, output="done\n")
    job = await engine.wait(job.id)
    assert (job.state, job.exit_code, job.failure) == (JobState.SUCCEEDED, 0, None)
    assert job.created_at <= job.assigned_at <= job.started_at <= job.finished_at  # type: ignore[operator]
    assert await engine.log_text(job.id) == "done\n"


async def test_failure_records_exit_code(engine: Hodei, manual: ManualExecutor) -> None:
    job = await engine.submit(TRUE)
    manual.finish(job.id, 3)
    job = await engine.wait(job.id)
    assert (job.state, job.exit_code, job.failure) == (
        JobState.FAILED,
        3,
        FailureReason.SCRIPT_FAILURE,
    )


async def test_retries_run_the_job_again(engine: Hodei, manual: ManualExecutor) -> None:
    job = await engine.submit(JobSpec(command=["flaky"], retries=2))
    for attempt in (1, 2):
        await manual.started(job.id, attempt)
        manual.finish(job.id, 1)
    await manual.started(job.id, 3)
    manual.finish(job.id, 0)
    job = await engine.wait(job.id)
    assert (job.state, job.attempt) == (JobState.SUCCEEDED, 3)


async def test_bad_spec_is_refused_with_every_problem(engine: Hodei) -> None:
    with pytest.raises(JobSpecInvalid) as info:
        await engine.submit(JobSpec(timeout_s=-1, resources=Resources(cpu=-1)))
    paths = {p.path for p in info.value.problems}
    assert {"timeout_s", "resources.cpu"} <= paths
    assert len(info.value.problems) >= 3  # neither command nor script, too
    assert await engine.list() == []


async def test_timeout(autojump_clock: trio.testing.MockClock, engine: Hodei) -> None:
    job = await engine.submit(JobSpec(command=["hang"], timeout_s=30))
    job = await engine.wait(job.id)
    assert (job.state, job.failure) == (JobState.TIMED_OUT, FailureReason.TIMEOUT)
    assert job.finished_at is not None and job.started_at is not None
    assert job.finished_at - job.started_at == pytest.approx(30, abs=0.5)
    assert "timed out after 30s" in await engine.log_text(job.id)


async def test_cancel_queued_assigned_and_running(engine: Hodei, manual: ManualExecutor) -> None:
    # fill all 4 slots, so the fifth job stays queued
    running = [await engine.submit(TRUE) for _ in range(4)]
    for job in running:
        await manual.started(job.id)
    queued = await engine.submit(TRUE)
    assert (await engine.cancel(queued.id)).state is JobState.CANCELLED
    cancelling = await engine.cancel(running[0].id)
    assert cancelling.state is JobState.CANCELLING
    job = await engine.wait(running[0].id)
    assert (job.state, job.failure) == (JobState.CANCELLED, FailureReason.CANCELLED)
    assert running[0].id not in manual.running
    with pytest.raises(JobAlreadyFinished):
        await engine.cancel(running[0].id)
    with pytest.raises(JobNotFound):
        await engine.cancel("job-nope")


async def test_cancel_assigned_before_start() -> None:
    # A job assigned to a worker that has not started it yet is cancelled at once.
    hodei = Hodei(store=MemoryStore(), bus=MemoryEventBus())
    worker, _ = await hodei.workers.register(WorkerRegistration(name="w"))
    job = await hodei.submit(TRUE)
    await hodei.scheduler.schedule_once()
    assert (await hodei.get(job.id)).state is JobState.ASSIGNED
    assert (await hodei.cancel(job.id)).state is JobState.CANCELLED
    with pytest.raises(JobAlreadyFinished):
        await hodei.orchestrator.start(worker.id, job.id, 1)
    assert await hodei.store.active_jobs(worker.id) == []


async def test_stale_attempt_is_refused(engine: Hodei, manual: ManualExecutor) -> None:
    job = await engine.submit(TRUE)
    await manual.started(job.id)
    job = await engine.get(job.id)
    with pytest.raises(StaleAttempt):
        await engine.orchestrator.start(job.worker_id, job.id, job.attempt + 1)
    with pytest.raises(StaleAttempt):
        await engine.orchestrator.finish("wrk-other", job.id, job.attempt, Outcome(0))
    assert (await engine.get(job.id)).state is JobState.RUNNING


async def test_labels_and_capacity_filter_before_the_policy() -> None:
    seen: list[int] = []

    class Spy:
        def choose(self, job, candidates):  # type: ignore[no-untyped-def]
            seen.append(len(candidates))
            assert all(job.spec.labels <= c.worker.labels and c.free_slots > 0 for c in candidates)
            return candidates[-1]

    hodei = Hodei(store=MemoryStore(), bus=MemoryEventBus(), policy=Spy())
    gpu, _ = await hodei.workers.register(
        WorkerRegistration(name="gpu", labels={"gpu"}, capacity=Capacity(slots=1))
    )
    await hodei.workers.register(WorkerRegistration(name="cpu", capacity=Capacity(slots=5)))
    jobs = [await hodei.submit(JobSpec(command=["t"], labels={"gpu"})) for _ in range(3)]
    await hodei.scheduler.schedule_once()
    states = [(await hodei.get(j.id)).state for j in jobs]
    assert states == [JobState.ASSIGNED, JobState.QUEUED, JobState.QUEUED]
    assert (await hodei.get(jobs[0].id)).worker_id == gpu.id
    assert seen == [1]  # once full, the gpu worker is no candidate: the policy is not asked


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(FirstFit(), [4, 0]), (BinPack(), [4, 0]), (LeastLoaded(), [2, 2])],
)
async def test_stock_policies_place_as_documented(policy, expected) -> None:  # type: ignore[no-untyped-def]
    hodei = Hodei(store=MemoryStore(), bus=MemoryEventBus(), policy=policy)
    workers = [
        (await hodei.workers.register(WorkerRegistration(name=n, capacity=Capacity(slots=4))))[0]
        for n in ("a", "b")
    ]
    for _ in range(4):
        await hodei.submit(TRUE)
    await hodei.scheduler.schedule_once()
    assert [len(await hodei.store.active_jobs(w.id)) for w in workers] == expected


async def test_unschedulable_job_fails_in_embedded_engine(engine: Hodei) -> None:
    job = await engine.submit(JobSpec(command=["t"], labels={"nowhere"}))
    job = await engine.wait(job.id)
    assert (job.state, job.failure) == (JobState.FAILED, FailureReason.UNSCHEDULABLE)


async def test_quota_refuses_with_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    quotas = {"acme": TenantQuota(max_queued=2, submit_rate=3)}
    async with open_embedded(workers=0, quotas=quotas, clock=trio_wall_clock) as hodei:
        await hodei.submit(TRUE, tenant="acme")
        await hodei.submit(TRUE, tenant="acme")
        with pytest.raises(QuotaExceeded) as info:
            await hodei.submit(TRUE, tenant="acme")
        assert "queued" in str(info.value) and info.value.retry_after_s > 0
        await hodei.submit(TRUE, tenant="other")  # other tenants are not affected
        for job in await hodei.list(tenant="acme"):
            await hodei.cancel(job.id)
        await trio.sleep(20)
        await hodei.submit(TRUE, tenant="acme")  # third submission within the minute
        with pytest.raises(QuotaExceeded) as info:
            await hodei.submit(TRUE, tenant="acme")
        # the first submission leaves the window 60 s after it was made, 20 s ago
        assert info.value.retry_after_s == pytest.approx(40, abs=0.5)
        await trio.sleep(info.value.retry_after_s)
        await hodei.submit(TRUE, tenant="acme")
        assert len(await hodei.list(tenant="acme")) == 4


async def test_max_running_holds_jobs_back(engine: Hodei, manual: ManualExecutor) -> None:
    engine.quotas.set_quota("small", TenantQuota(max_running=1))
    first = await engine.submit(TRUE, tenant="small")
    second = await engine.submit(TRUE, tenant="small")
    await manual.started(first.id)
    other = await engine.submit(TRUE)
    await manual.started(other.id)  # capacity remains, but not for tenant "small"
    assert (await engine.get(second.id)).state is JobState.QUEUED
    manual.finish(first.id)
    await manual.started(second.id)


async def test_lost_worker_requeues_then_fails(autojump_clock: trio.testing.MockClock) -> None:
    manual = ManualExecutor()
    async with open_embedded(
        workers=1, executor=manual, clock=trio_wall_clock, worker_settings=FAST, lost_after_s=10
    ) as hodei:
        # a worker that registers, takes the job, and is never heard from again
        ghost, _ = await hodei.workers.register(WorkerRegistration(name="ghost", labels={"x"}))
        job = await hodei.submit(JobSpec(command=["t"], labels={"x"}, retries=1))

        async def ghost_takes_it(*, starts: bool) -> Job:
            await hodei.workers.heartbeat(ghost.id, [])  # (back from the dead, if it was)
            await hodei.scheduler.schedule_once()
            taken = await hodei.get(job.id)
            assert taken.worker_id == ghost.id
            if starts:
                await hodei.orchestrator.start(ghost.id, job.id, taken.attempt)
            await trio.sleep(15)  # the reaper notices
            assert (await hodei.get_worker(ghost.id)).state is WorkerState.LOST
            return await hodei.get(job.id)

        # lost before it started: queued again, and that cost no retry
        lost = await ghost_takes_it(starts=False)
        assert (lost.state, lost.attempt, lost.unstarted_losses) == (JobState.QUEUED, 2, 1)
        # lost while running: queued again on its one retry
        lost = await ghost_takes_it(starts=True)
        assert (lost.state, lost.attempt, lost.unstarted_losses) == (JobState.QUEUED, 3, 1)
        # lost while running again: no retry left
        lost = await ghost_takes_it(starts=True)
        assert (lost.state, lost.failure) == (JobState.FAILED, FailureReason.WORKER_LOST)
        # the embedded worker kept heartbeating all along
        workers = await hodei.list_workers()
        assert [w.state for w in workers] == [WorkerState.ONLINE, WorkerState.LOST]


async def test_a_job_without_retries_given_to_a_dead_worker_runs_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_embedded(
        workers=0, clock=trio_wall_clock, worker_settings=FAST, lost_after_s=10
    ) as hodei:
        # an agent that died a moment ago still looks alive, and is given the job
        dead, _ = await hodei.workers.register(WorkerRegistration(name="dead"))
        job = await hodei.submit(JobSpec(command=["t"]))
        await hodei.scheduler.schedule_once()
        assert (await hodei.get(job.id)).worker_id == dead.id
        await trio.sleep(15)  # the reaper notices
        ran: list[str] = []
        async with hodei.control_plane() as control, trio.open_nursery() as nursery:
            loop = WorkerLoop(
                control,
                CallableExecutor(lambda j: ran.append(j.id) or 0),
                WorkerRegistration(name="alive"),
                settings=FAST,
            )
            await nursery.start(loop.run)
            done = await hodei.wait(job.id)
            nursery.cancel_scope.cancel()
        assert (done.state, done.attempt, done.unstarted_losses) == (JobState.SUCCEEDED, 2, 1)
        assert ran == [job.id]


async def test_a_silent_worker_is_lost_when_lost_after_s_has_passed_not_a_check_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_embedded(workers=0, clock=trio_wall_clock, lost_after_s=10) as hodei:
        worker, _ = await hodei.workers.register(WorkerRegistration(name="w"))
        # its last sign of life falls between two of the reaper's regular checks
        await trio.sleep(3.7)
        await hodei.workers.heartbeat(worker.id, [])
        last = trio.current_time()
        async with hodei.bus.subscribe(f"workers.{worker.id}.lost") as lost:
            await lost.receive()
        # (the floor of the reaper's pace is a twentieth of lost_after_s)
        assert 10 <= trio.current_time() - last < 10.6


async def test_lost_worker_reports_are_refused_and_it_is_told_to_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_embedded(workers=0, clock=trio_wall_clock, lost_after_s=10) as hodei:
        w, _ = await hodei.workers.register(WorkerRegistration(name="w"))
        job = await hodei.submit(JobSpec(command=["t"], retries=1))
        await hodei.scheduler.schedule_once()
        await hodei.orchestrator.start(w.id, job.id, 1)
        await trio.sleep(15)
        # back from the dead: its old attempt is fenced off and it must stop the process
        instructions = await hodei.workers.heartbeat(w.id, [(job.id, 1)])
        assert (job.id, 1) in instructions.cancel
        with pytest.raises(StaleAttempt):
            await hodei.orchestrator.finish(w.id, job.id, 1, Outcome(0))


async def test_drain_finishes_running_jobs_then_goes_offline(
    engine: Hodei, manual: ManualExecutor
) -> None:
    job = await engine.submit(TRUE)
    await manual.started(job.id)
    worker_id = (await engine.get(job.id)).worker_id
    assert worker_id is not None
    assert (await engine.drain_worker(worker_id)).state is WorkerState.DRAINING
    later = [await engine.submit(TRUE) for _ in range(2)]
    for other in later:
        await manual.started(other.id)
        assert (await engine.get(other.id)).worker_id != worker_id
    async with engine.bus.subscribe(f"workers.{worker_id}.left") as left:
        manual.finish(job.id)
        with trio.fail_after(5):
            await left.receive()
    assert (await engine.get_worker(worker_id)).state is WorkerState.OFFLINE


async def test_callable_executor_sync_and_async() -> None:
    async def slow_ok(job):  # type: ignore[no-untyped-def]
        await trio.lowlevel.checkpoint()
        return 0

    for fn in (lambda job: 7, slow_ok):
        async with open_embedded(executor=CallableExecutor(fn)) as hodei:
            job = await hodei.wait((await hodei.submit(TRUE)).id)
            assert job.exit_code == (7 if fn is not slow_ok else 0)


async def test_executor_exception_fails_the_job_not_the_worker() -> None:
    def boom(job):  # type: ignore[no-untyped-def]
        raise RuntimeError("kaput")

    async with open_embedded(executor=CallableExecutor(boom)) as hodei:
        job = await hodei.wait((await hodei.submit(TRUE)).id)
        assert (job.state, job.failure) == (JobState.FAILED, FailureReason.INTERNAL)
        assert "kaput" in await hodei.log_text(job.id)
        # the worker is still there for the next job
        job = await hodei.wait((await hodei.submit(TRUE)).id)
        assert job.state is JobState.FAILED


async def test_follow_logs_streams_until_the_end(engine: Hodei, manual: ManualExecutor) -> None:
    job = await engine.submit(TRUE)
    await manual.started(job.id)
    manual.finish(job.id, 0, output="one\ntwo\n")
    chunks = [c async for c in engine.follow_logs(job.id)]
    assert "".join(c.data for c in chunks) == "one\ntwo\n"
    assert [c.seq for c in chunks] == list(range(len(chunks)))


async def test_registering_again_keeps_only_the_jobs_the_agent_still_runs() -> None:
    hodei = Hodei(store=MemoryStore(), bus=MemoryEventBus())
    worker, _ = await hodei.workers.register(WorkerRegistration(name="w", capacity=Capacity(2)))
    kept = await hodei.submit(JobSpec(command=["t"], retries=1))
    dropped = await hodei.submit(JobSpec(command=["t"], retries=1))
    await hodei.scheduler.schedule_once()
    for job in (kept, dropped):
        await hodei.orchestrator.start(worker.id, job.id, 1)
    # the server lost track of the agent's token; the agent registers again, still running one
    again, created = await hodei.workers.register(WorkerRegistration(name="w"), [(kept.id, 1)])
    assert (again.id, created) == (worker.id, False)
    assert (await hodei.get(kept.id)).state is JobState.RUNNING
    requeued = await hodei.get(dropped.id)
    assert (requeued.state, requeued.attempt) == (JobState.QUEUED, 2)


class _Recording:
    """A control plane that records the calls that say a worker is alive or gone."""

    def __init__(self, inner: InProcessControlPlane) -> None:
        self.inner = inner
        self.calls: list[tuple[str, float]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def heartbeat(self, worker_id: str, running: Sequence[tuple[str, int]]) -> Instructions:
        self.calls.append(("heartbeat", trio.current_time()))
        return await self.inner.heartbeat(worker_id, running)

    async def leave(self, worker_id: str) -> None:
        self.calls.append(("leave", trio.current_time()))
        await self.inner.leave(worker_id)


async def test_a_draining_worker_heartbeats_at_once_and_never_after_leaving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # a worker that a server asked for rare heartbeats (its poll spoke for it) stops polling
    # when it drains: its heartbeats alone must keep it alive from then on
    engine = Hodei(store=MemoryStore(), bus=MemoryEventBus(), clock=trio.current_time)
    async with trio.open_nursery() as nursery, engine.control_plane() as inner:
        await nursery.start(engine.run)
        control = _Recording(inner)
        settings = WorkerSettings(heartbeat_interval_s=1_000.0)
        manual = ManualExecutor()
        loop = WorkerLoop(control, manual, WorkerRegistration(name="w"), settings=settings)
        await nursery.start(loop.run)
        job = await engine.submit(TRUE)
        await manual.started(job.id)
        await trio.sleep(10)
        assert control.calls == []
        drained_at = trio.current_time()
        await engine.drain_worker(loop.worker_id)
        await trio.sleep(10)
        assert control.calls == [("heartbeat", pytest.approx(drained_at, abs=1.0))]
        manual.finish(job.id)
        await trio.sleep(10)
        assert [call for call, _ in control.calls] == ["heartbeat", "leave"]
        assert (await engine.get_worker(loop.worker_id)).state is WorkerState.OFFLINE
        nursery.cancel_scope.cancel()
