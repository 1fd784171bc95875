"""The in-process long-poll reads the store only when its inbox says something changed, and not
even then when all that changed is assignments made by this process's scheduler."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
import trio
import trio.testing

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Capacity, Hodei, Job, JobSpec, Worker, WorkerRegistration
from hodei_core._handoff import Handoff
from hodei_core.ports import Instructions
from hodei_core.worker import InProcessControlPlane

TRUE = JobSpec(command=["true"])


class _CountingStore(MemoryStore):
    """A memory store that counts the reads of a worker's active jobs."""

    def __init__(self) -> None:
        super().__init__()
        self.active_reads = 0

    async def active_jobs(self, worker_id: str) -> list[Job]:
        self.active_reads += 1
        return await super().active_jobs(worker_id)


@attrs.frozen
class _Polled:
    store: _CountingStore
    hodei: Hodei
    control: InProcessControlPlane
    worker: Worker


@pytest.fixture
async def polled() -> AsyncIterator[_Polled]:
    """An engine on a counting store, with one worker registered through its control plane."""
    store = _CountingStore()
    hodei = Hodei(store=store, bus=MemoryEventBus(), clock=trio.current_time)
    async with hodei.control_plane() as control:
        worker = await control.register(WorkerRegistration(name="w", capacity=Capacity(slots=4)))
        yield _Polled(store, hodei, control, worker)


async def test_a_poll_right_after_taking_jobs_waits_without_reading_the_store(
    autojump_clock: trio.testing.MockClock, polled: _Polled
) -> None:
    store, hodei, control, worker = polled.store, polled.hodei, polled.control, polled.worker
    job = await hodei.submit(TRUE)
    await hodei.scheduler.schedule_once(job_queued=True)

    taken = await control.poll(worker.id, [], timeout_s=0.5)
    assert [j.id for j in taken.jobs] == [job.id]
    assert store.active_reads == 1

    # nothing arrived since: the next poll goes straight to waiting, without a read
    await hodei.orchestrator.start(worker.id, job.id, job.attempt)
    running = [(job.id, job.attempt)]
    told: list[Instructions] = []

    async def poll() -> None:
        told.append(await control.poll(worker.id, running, timeout_s=30))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        assert store.active_reads == 1 and not told
        # a cancel arrives in the inbox: the poll reads and says to stop the job
        await hodei.cancel(job.id)
    assert told[0].cancel == {(job.id, job.attempt)}
    assert store.active_reads == 2


async def test_a_long_wait_reads_the_store_now_and_then_in_case_an_event_was_lost(
    autojump_clock: trio.testing.MockClock, polled: _Polled
) -> None:
    control, worker_id = polled.control, polled.worker.id
    await control.poll(worker_id, [], timeout_s=0)
    reads = polled.store.active_reads
    await control.poll(worker_id, [], timeout_s=10.5)
    # one read a second (the recheck), none in between
    assert 9 <= polled.store.active_reads - reads <= 11


async def _poll_through(
    polled: _Polled, assign: Callable[[], Awaitable[list[Job]]]
) -> tuple[Instructions, list[Job], int]:
    """What a waiting poll says when ``assign`` assigns jobs meanwhile, the jobs, and how
    many store reads the poll made (after a first poll, which reads)."""
    control, worker_id = polled.control, polled.worker.id
    assert await control.poll(worker_id, [], timeout_s=0) == Instructions()
    reads = polled.store.active_reads
    told: list[Instructions] = []

    async def poll() -> None:
        told.append(await control.poll(worker_id, [], timeout_s=30))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        jobs = await assign()
    return told[0], jobs, polled.store.active_reads - reads


async def _submit_and_assign(hodei: Hodei, count: int) -> list[Job]:
    jobs = [await hodei.submit(TRUE) for _ in range(count)]
    assert await hodei.scheduler.schedule_once(job_queued=True) == count
    return jobs


async def test_a_poll_woken_by_assignments_takes_the_jobs_as_the_scheduler_left_them(
    autojump_clock: trio.testing.MockClock, polled: _Polled
) -> None:
    hodei = polled.hodei
    told, jobs, reads = await _poll_through(polled, lambda: _submit_and_assign(hodei, 3))
    assert reads == 0  # the jobs came with the assignments
    assert list(told.jobs) == await polled.store.active_jobs(polled.worker.id)
    assert sorted(j.id for j in told.jobs) == sorted(j.id for j in jobs)
    assert not told.cancel and not told.drain
    assert len(hodei._ctx.handoff) == 0  # taken, not kept


async def test_an_assignment_by_another_engine_is_read_from_the_store(
    autojump_clock: trio.testing.MockClock, polled: _Polled
) -> None:
    """Two engines on one store and bus: the other one's scheduler keeps its own handoff."""
    other = Hodei(store=polled.store, bus=polled.hodei.bus, clock=trio.current_time)
    told, jobs, reads = await _poll_through(polled, lambda: _submit_and_assign(other, 1))
    assert reads == 1
    assert [j.id for j in told.jobs] == [jobs[0].id]


async def test_an_assignment_with_other_news_is_read_from_the_store(
    autojump_clock: trio.testing.MockClock, polled: _Polled
) -> None:
    """A job assigned and then cancelled before the poll looks: the store has the last word,
    and the job taken from the handoff is not handed out stale."""
    store, hodei, control, worker = polled.store, polled.hodei, polled.control, polled.worker
    assert await control.poll(worker.id, [], timeout_s=0) == Instructions()
    reads = store.active_reads
    job = await hodei.submit(TRUE)
    await hodei.scheduler.schedule_once(job_queued=True)
    await hodei.cancel(job.id)
    assert await control.poll(worker.id, [], timeout_s=0) == Instructions()
    assert store.active_reads == reads + 1
    assert len(hodei._ctx.handoff) == 0


def test_the_handoff_keeps_only_the_latest_jobs() -> None:
    handoff = Handoff(limit=2)
    jobs = [Job(id=f"j{i}", spec=TRUE) for i in range(3)]
    for job in jobs:
        handoff.put(job)
    assert len(handoff) == 2
    assert handoff.take("j0", 1) is None  # pushed out by newer ones
    assert handoff.take("j2", 1) is jobs[2]
    assert handoff.take("j2", 1) is None  # taken once
    assert handoff.take("j1", 2) is None  # another attempt
    assert handoff.take("j1", 1) is jobs[1]
