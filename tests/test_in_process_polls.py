"""The in-process long-poll reads the store only when its inbox says something changed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
import trio
import trio.testing

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Hodei, Job, JobSpec, Worker, WorkerRegistration
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
        worker = await control.register(WorkerRegistration(name="w"))
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
